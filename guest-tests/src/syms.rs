//! The guest's own function symbols, embedded at build time.
//!
//! A program cannot contain its symbol table before it is linked, so the
//! image reserves [`CAPACITY`] bytes of zeros in the page-aligned section
//! `.guest_syms` (see `link.ld`), and `scripts/build-guests`, after linking,
//! extracts the text symbols with `nm -n -S -C --defined-only` and writes
//! them into that section with `objcopy --update-section` (same size, so
//! nothing else moves). An all-zero (or otherwise invalid) blob means "no
//! symbols": every lookup returns `None`.
//!
//! Blob format (all integers little endian):
//!
//! ```text
//! 0   magic  b"GSYM"
//! 4   u32    version (1)
//! 8   u32    count: number of symbols
//! 12  u32    strtab_len: bytes of the string table
//! 16  count x { u64 addr, u32 size, u32 name_offset }, sorted by addr
//! ..  string table: names, each NUL terminated, name_offset relative to it
//! ```
//!
//! `size` is the symbol's size from `nm -S`, or for symbols without one
//! (assembly labels) the distance to the next symbol; a RIP at or beyond
//! `addr + size` belongs to no symbol.

/// Bytes reserved for the blob.
pub const CAPACITY: usize = 64 * 1024;
const MAGIC: &[u8; 4] = b"GSYM";
const VERSION: u32 = 1;
const HEADER: usize = 16;
const ENTRY: usize = 16;

/// The reserved, zero-filled block; the build script overwrites it. Read only
/// through the linker symbols below, so the compiler cannot assume it is
/// still zero.
#[used]
#[link_section = ".guest_syms"]
static GUEST_SYMS: [u8; CAPACITY] = [0; CAPACITY];

/// One function symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub size: u64,
    pub name: &'static str,
}

impl Symbol {
    /// Whether `addr` lies inside the symbol.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.addr && addr - self.addr < self.size
    }
}

/// The embedded blob (empty if the image has no `.guest_syms` section).
fn blob() -> &'static [u8] {
    extern "C" {
        static __guest_syms_start: u8;
        static __guest_syms_end: u8;
    }
    // Keep the reservation referenced even if a linker script without KEEP
    // is used.
    let _ = core::ptr::addr_of!(GUEST_SYMS);
    // SAFETY: the linker script defines both symbols around the
    // `.guest_syms` output section, which is loaded with the image and never
    // written at run time.
    unsafe {
        let start = core::ptr::addr_of!(__guest_syms_start);
        let end = core::ptr::addr_of!(__guest_syms_end);
        let len = (end as usize).saturating_sub(start as usize);
        core::slice::from_raw_parts(start, len)
    }
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let bytes = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let bytes = b.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// A validated view of a symbol blob.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    entries: &'static [u8],
    strtab: &'static [u8],
    count: usize,
}

impl Table {
    /// Parse `blob`; `None` if it is empty, has a wrong magic/version, or its
    /// entries or string table do not fit.
    pub fn parse(blob: &'static [u8]) -> Option<Table> {
        if blob.get(..4)? != MAGIC || u32_at(blob, 4)? != VERSION {
            return None;
        }
        let count = u32_at(blob, 8)? as usize;
        let strtab_len = u32_at(blob, 12)? as usize;
        let entries_end = count.checked_mul(ENTRY)?.checked_add(HEADER)?;
        let strtab_end = entries_end.checked_add(strtab_len)?;
        Some(Table {
            entries: blob.get(HEADER..entries_end)?,
            strtab: blob.get(entries_end..strtab_end)?,
            count,
        })
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn addr(&self, i: usize) -> u64 {
        u64_at(self.entries, i * ENTRY).unwrap_or(u64::MAX)
    }

    /// Symbol `i` (in address order); `None` if out of range or its name is
    /// not a valid, terminated string inside the string table.
    pub fn get(&self, i: usize) -> Option<Symbol> {
        if i >= self.count {
            return None;
        }
        let off = i * ENTRY;
        let addr = u64_at(self.entries, off)?;
        let size = u64::from(u32_at(self.entries, off + 8)?);
        let name_off = u32_at(self.entries, off + 12)? as usize;
        let rest = self.strtab.get(name_off..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        let name = core::str::from_utf8(&rest[..len]).ok()?;
        Some(Symbol { addr, size, name })
    }

    /// The symbol containing `addr`.
    pub fn find(&self, addr: u64) -> Option<Symbol> {
        // Last entry with entry.addr <= addr (entries are sorted).
        let (mut lo, mut hi) = (0usize, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.addr(mid) <= addr {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let sym = self.get(lo.checked_sub(1)?)?;
        sym.contains(addr).then_some(sym)
    }
}

/// The symbol table of the running image (`None`: built without symbols).
pub fn table() -> Option<Table> {
    Table::parse(blob())
}

/// Number of embedded symbols (0 without symbols).
pub fn count() -> usize {
    table().map_or(0, |t| t.len())
}

/// The function containing `addr`.
pub fn find(addr: u64) -> Option<Symbol> {
    table()?.find(addr)
}

/// Name of the function containing `rip` and the offset of `rip` in it.
pub fn lookup(rip: u64) -> Option<(&'static str, u64)> {
    find(rip).map(|s| (s.name, rip - s.addr))
}
