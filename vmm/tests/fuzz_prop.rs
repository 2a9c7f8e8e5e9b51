//! Property tests standing in for fuzzing at CI time (cargo-fuzz needs a
//! nightly toolchain): the API's HTTP request parser and the ELF /
//! Multiboot loaders get arbitrary and mutated inputs. They must never
//! panic, and what they accept must be consistent. `PROPTEST_CASES=N`
//! sets the cases of every property (the README says how to run them for
//! an hour).

use std::io::Read;
use std::time::Duration;

use proptest::prelude::*;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm::api::http::{ReadError, Reader, MAX_BODY, MAX_HEAD};
use vmm::boot::{self, EntryMode, ImageFormat};

// ------------------------------------------------------------------ HTTP

/// A connection that delivers `data` in the given chunk sizes, then EOF.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = self.sizes.get(self.next).copied().unwrap_or(4096).max(1);
        self.next += 1;
        let n = want.min(buf.len()).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn chunked(data: Vec<u8>, sizes: Vec<usize>) -> Chunked {
    Chunked {
        data,
        pos: 0,
        sizes,
        next: 0,
    }
}

/// Reads requests until the connection ends; checks every outcome.
fn read_all(conn: &mut Chunked) -> Result<Vec<vmm::api::http::Request>, TestCaseError> {
    let mut reader = Reader::new(Duration::from_secs(60));
    let mut out = Vec::new();
    // Every request consumes at least its request line: bounded.
    for _ in 0..=conn.data.len() {
        match reader.next(conn) {
            Ok(req) => {
                prop_assert!(req.path.starts_with('/'), "{:?}", req.path);
                prop_assert!(!req.path.contains('?'));
                prop_assert!(req.body.len() <= MAX_BODY);
                out.push(req);
            }
            Err(ReadError::Closed) => return Ok(out),
            Err(ReadError::Respond(status, msg)) => {
                prop_assert!(
                    matches!(status, 400 | 408 | 413 | 431),
                    "status {} ({})",
                    status,
                    msg
                );
                return Ok(out);
            }
        }
    }
    Err(TestCaseError::fail("the reader never stopped"))
}

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    close: bool,
}

impl Req {
    fn bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {}", self.method, self.path);
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s.push_str(" HTTP/1.1\r\nHost: vmm\r\n");
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        if self.close {
            s.push_str("Connection: close\r\n");
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut b = s.into_bytes();
        b.extend_from_slice(&self.body);
        b
    }
}

fn request() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(&["GET", "PUT", "POST", "DELETE", "HEAD"][..]),
        "(/[a-z0-9._-]{0,12}){1,4}",
        prop::option::of("[a-z0-9=&]{0,16}"),
        prop::collection::vec(("X-[A-Za-z-]{1,10}", "[ -~]{0,30}"), 0..6),
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(method, path, query, headers, body, close)| Req {
            method: method.to_string(),
            path,
            query,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.trim().to_string()))
                .collect(),
            body,
            close,
        })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..4, 1usize..64, 1usize..5000], 0..64)
}

/// Cases per property: `PROPTEST_CASES` if set (long runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), ..ProptestConfig::default() })]

    /// Arbitrary bytes, in arbitrary pieces.
    #[test]
    fn http_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..2048), sizes in chunk_sizes()) {
        read_all(&mut chunked(data, sizes))?;
    }

    /// Well-formed requests, pipelined, in arbitrary pieces: parsed back
    /// exactly.
    #[test]
    fn http_requests_round_trip(reqs in prop::collection::vec(request(), 1..4), sizes in chunk_sizes()) {
        let data: Vec<u8> = reqs.iter().flat_map(Req::bytes).collect();
        let got = read_all(&mut chunked(data, sizes))?;
        prop_assert_eq!(got.len(), reqs.len());
        for (g, r) in got.iter().zip(&reqs) {
            prop_assert_eq!(&g.method, &r.method);
            prop_assert_eq!(&g.path, &r.path);
            prop_assert_eq!(&g.body, &r.body);
            prop_assert_eq!(g.close, r.close);
        }
    }

    /// Well-formed requests with bytes flipped, inserted or cut.
    #[test]
    fn http_mutated_requests(
        req in request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
        sizes in chunk_sizes(),
    ) {
        let mut data = req.bytes();
        for (i, b) in &flips {
            let at = i.index(data.len());
            data[at] = *b;
        }
        if let Some(c) = cut {
            data.truncate(c.index(data.len() + 1));
        }
        read_all(&mut chunked(data, sizes))?;
    }

    /// Oversized heads and bodies are refused, not buffered.
    #[test]
    fn http_limits(extra in 0usize..4096, body_excess in 1usize..100_000) {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(MAX_HEAD + extra));
        let mut r = Reader::new(Duration::from_secs(60));
        let got = r.next(&mut chunked(big.into_bytes(), vec![]));
        prop_assert!(matches!(got, Err(ReadError::Respond(431, _))), "{:?}", got);
        let long = format!("PUT / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", MAX_BODY + body_excess);
        let mut r = Reader::new(Duration::from_secs(60));
        let got = r.next(&mut chunked(long.into_bytes(), vec![]));
        prop_assert!(matches!(got, Err(ReadError::Respond(413, _))), "{:?}", got);
    }
}

// ------------------------------------------------------------ boot loaders

const RAM: u64 = 32 << 20;

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).expect("guest memory")
}

fn image(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(vmm::guests::DIR).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Loads `img`; an image that loads has its entry inside guest RAM.
fn check_load(img: &[u8]) -> Result<(), TestCaseError> {
    let mem = memory();
    if let Ok(entry) = boot::load(&mem, img, "console=ttyS0") {
        prop_assert!(entry.entry < RAM, "entry {:#x}", entry.entry);
        prop_assert!(entry.mbi < RAM);
        match entry.format {
            ImageFormat::Elf64 => prop_assert_eq!(entry.mode, EntryMode::Long),
            ImageFormat::Multiboot => prop_assert_eq!(entry.mode, EntryMode::Protected),
        }
    }
    Ok(())
}

/// Byte mutations aimed at the headers (ELF header, program headers, the
/// Multiboot header in the first 8 KiB), some anywhere.
fn mutations() -> impl Strategy<Value = Vec<(usize, u8)>> {
    prop::collection::vec(
        (
            prop_oneof![4 => 0usize..128, 4 => 0usize..1024, 2 => 0usize..8192, 1 => any::<usize>()],
            prop_oneof![Just(0u8), Just(0xFF), Just(0x80), any::<u8>()],
        ),
        1..12,
    )
}

fn mutate(mut img: Vec<u8>, muts: &[(usize, u8)], cut: Option<prop::sample::Index>) -> Vec<u8> {
    for &(at, b) in muts {
        let len = img.len();
        img[at % len] = b;
    }
    if let Some(c) = cut {
        img.truncate(c.index(img.len() + 1));
    }
    img
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), ..ProptestConfig::default() })]

    /// Arbitrary bytes, sometimes starting like an ELF or holding a
    /// Multiboot magic.
    #[test]
    fn loaders_arbitrary_bytes(
        prefix in prop_oneof![
            Just(vec![]),
            Just(b"\x7fELF\x02\x01\x01".to_vec()),
            Just(b"\x7fELF\x01\x01\x01".to_vec()),
            Just(0x1BAD_B002u32.to_le_bytes().to_vec()),
        ],
        data in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut img = prefix;
        img.extend(data);
        check_load(&img)?;
    }

    /// The ELF64 guest with mutated headers.
    #[test]
    fn loaders_mutated_elf64(muts in mutations(), cut in prop::option::of(any::<prop::sample::Index>())) {
        check_load(&mutate(image("hello.elf"), &muts, cut))?;
    }

    /// The Multiboot (ELF32) guest with mutated headers.
    #[test]
    fn loaders_mutated_multiboot(muts in mutations(), cut in prop::option::of(any::<prop::sample::Index>())) {
        check_load(&mutate(image("hello.mb.elf"), &muts, cut))?;
    }
}

#[test]
fn the_unmutated_guests_load() {
    let mem = memory();
    let e = boot::load(&mem, &image("hello.elf"), "").expect("hello.elf");
    assert_eq!(e.format, ImageFormat::Elf64);
    let e = boot::load(&mem, &image("hello.mb.elf"), "").expect("hello.mb.elf");
    assert_eq!(e.format, ImageFormat::Multiboot);
}
