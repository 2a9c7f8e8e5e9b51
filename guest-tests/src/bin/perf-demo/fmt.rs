//! Number formatting without allocation.

use core::fmt;

/// An integer with thousands separators (`1,234,567`); honours width and
/// alignment.
pub struct Sep(pub u64);

impl fmt::Display for Sep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        let mut pos = buf.len();
        let mut v = self.0;
        let mut digits = 0;
        loop {
            if digits > 0 && digits % 3 == 0 {
                pos -= 1;
                buf[pos] = b',';
            }
            pos -= 1;
            buf[pos] = b'0' + (v % 10) as u8;
            v /= 10;
            digits += 1;
            if v == 0 {
                break;
            }
        }
        f.pad(core::str::from_utf8(&buf[pos..]).unwrap_or("?"))
    }
}

/// `num / den` with two decimals (`0.83`), `scale` multiplied in first
/// (100 for a percentage); "-" if `den` is 0.
pub struct Ratio {
    pub num: u64,
    pub den: u64,
    pub scale: u64,
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 0 {
            return f.pad("-");
        }
        let x100 = u128::from(self.num) * u128::from(self.scale) * 100 / u128::from(self.den);
        let mut buf = [0u8; 48];
        let mut w = Buf {
            buf: &mut buf,
            len: 0,
        };
        let _ = fmt::write(&mut w, format_args!("{}.{:02}", x100 / 100, x100 % 100));
        let len = w.len;
        f.pad(core::str::from_utf8(&buf[..len]).unwrap_or("?"))
    }
}

struct Buf<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
