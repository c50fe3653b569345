//! Reader for IDX files, the format of MNIST and Fashion-MNIST.
//!
//! An IDX file is: two zero bytes, a type byte, a dimension-count byte, one big-endian `u32` per
//! dimension, then the data in row-major order. Only the unsigned-byte type (`0x08`) is
//! supported. Files may be gzip-compressed; compression is detected from the gzip magic bytes
//! (`1f 8b`), not from the file name.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::DEFAULT_FASHION_MNIST_DIR;
use crate::{Error, Result};

/// IDX type code for unsigned bytes, the only type this reader accepts.
pub const IDX_TYPE_U8: u8 = 0x08;

/// Largest data payload accepted, in bytes (1 GiB). Headers describing more are rejected before
/// anything is allocated.
pub const MAX_IDX_BYTES: usize = 1 << 30;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const INSTALL_HINT: &str =
    "install the Debian package with `apt-get install dataset-fashion-mnist` \
     or pass a data directory holding MNIST/Fashion-MNIST IDX files";

/// An n-dimensional array of unsigned bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Size of each dimension, outermost first.
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Reads an IDX file of unsigned bytes, plain or gzip-compressed.
///
/// Errors: [`Error::Io`] when the file cannot be opened or read, [`Error::Data`] for a wrong
/// magic number, an unsupported type, zero or oversized dimensions, truncated data, trailing
/// bytes, or a corrupt gzip stream.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file =
        File::open(path).map_err(|e| open_error(path, e, Path::new(DEFAULT_FASHION_MNIST_DIR)))?;
    let mut file = BufReader::new(file);
    let mut magic = Vec::with_capacity(2);
    (&mut file)
        .take(2)
        .read_to_end(&mut magic)
        .map_err(|source| io_error(path, source))?;
    let gzip = magic == GZIP_MAGIC;
    let stream = Cursor::new(magic).chain(file);
    if gzip {
        let mut decoder = MultiGzDecoder::new(stream);
        let result = parse(path, &mut decoder, true);
        if result.is_err() {
            // Damage may decode to plausible garbage first: a stream that fails further on is
            // reported as corrupt rather than as whatever the garbage looked like.
            let mut rest = (&mut decoder).take(MAX_IDX_BYTES as u64);
            if let Err(e) = io::copy(&mut rest, &mut io::sink()) {
                return Err(read_error(path, e, true));
            }
        }
        result
    } else {
        parse(path, stream, false)
    }
}

/// Parses an IDX stream already opened (and decompressed, if need be). `path` only names the
/// source in errors.
pub fn parse_idx(path: &Path, reader: impl Read) -> Result<IdxArray> {
    parse(path, reader, false)
}

fn parse(path: &Path, mut reader: impl Read, gzip: bool) -> Result<IdxArray> {
    let mut read_up_to = |n: usize| -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(n);
        (&mut reader)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|source| read_error(path, source, gzip))?;
        Ok(buf)
    };

    let header = read_up_to(4)?;
    if header.len() < 4 {
        return Err(data_error(
            path,
            format!(
                "only {} bytes, too short for the 4-byte IDX header",
                header.len()
            ),
            "The file is empty or cut short; download it again",
        ));
    }
    if header[..2] != [0, 0] {
        return Err(data_error(
            path,
            format!(
                "wrong magic number: expected 00 00 <type> <ndims>, found {:02x} {:02x} {:02x} {:02x}",
                header[0], header[1], header[2], header[3]
            ),
            "This is not an IDX (MNIST-format) file",
        ));
    }
    let (type_code, ndims) = (header[2], usize::from(header[3]));
    if type_code != IDX_TYPE_U8 {
        return Err(data_error(
            path,
            format!(
                "unsupported IDX type code 0x{type_code:02x} ({}); only 0x08 (unsigned byte) is supported",
                type_name(type_code)
            ),
            "Convert the file to unsigned bytes or use the MNIST/Fashion-MNIST ubyte files",
        ));
    }
    if ndims == 0 {
        return Err(data_error(
            path,
            "the header declares zero dimensions".into(),
            "The file is malformed; download it again",
        ));
    }

    let raw_dims = read_up_to(4 * ndims)?;
    if raw_dims.len() < 4 * ndims {
        return Err(data_error(
            path,
            format!(
                "truncated header: {ndims} dimensions need {} bytes of sizes, found {}",
                4 * ndims,
                raw_dims.len()
            ),
            "The file is cut short; download it again",
        ));
    }
    let dims: Vec<usize> = raw_dims
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    if let Some(i) = dims.iter().position(|&d| d == 0) {
        return Err(data_error(
            path,
            format!("dimension {i} of {dims:?} is zero"),
            "The file holds no data; use a non-empty IDX file",
        ));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            data_error(
                path,
                format!("dimensions {dims:?} describe more than the 1 GiB limit of {MAX_IDX_BYTES} bytes"),
                "The header is corrupt, or the file is too large for this reader",
            )
        })?;

    let data = read_up_to(expected)?;
    if data.len() < expected {
        return Err(data_error(
            path,
            format!(
                "truncated data: dimensions {dims:?} need {expected} bytes, found {}",
                data.len()
            ),
            "The file is cut short; download it again",
        ));
    }
    let trailing =
        io::copy(&mut reader, &mut io::sink()).map_err(|source| read_error(path, source, gzip))?;
    if trailing > 0 {
        return Err(data_error(
            path,
            format!("{trailing} trailing bytes after the {expected} data bytes that dimensions {dims:?} describe"),
            "The header does not match the data; the file is corrupt",
        ));
    }
    Ok(IdxArray { dims, data })
}

fn type_name(code: u8) -> &'static str {
    match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "not an IDX type",
    }
}

fn data_error(path: &Path, problem: String, hint: &str) -> Error {
    Error::Data {
        path: path.to_path_buf(),
        problem,
        hint: hint.to_string(),
    }
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A failed open; a missing file gets the install hint when the default dataset directory
/// `default_dir` is missing too.
fn open_error(path: &Path, source: io::Error, default_dir: &Path) -> Error {
    if source.kind() == io::ErrorKind::NotFound && !default_dir.is_dir() {
        let message = format!(
            "{source}; the default dataset directory {} is missing as well: {INSTALL_HINT}",
            default_dir.display()
        );
        return io_error(path, io::Error::new(io::ErrorKind::NotFound, message));
    }
    io_error(path, source)
}

/// A failed read: a data error from the gzip decoder means a corrupt stream, not an I/O failure.
fn read_error(path: &Path, source: io::Error, gzip: bool) -> Error {
    use io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    if gzip && matches!(source.kind(), InvalidData | InvalidInput | UnexpectedEof) {
        data_error(
            path,
            format!("corrupt gzip stream: {source}"),
            "The compressed file is damaged or incomplete (check with `gzip -t`); download it again",
        )
    } else {
        io_error(path, source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_hints_install_when_default_dir_is_missing() {
        let path = Path::new("/nonexistent/metalearn/t10k-images-idx3-ubyte");
        let not_found = || io::Error::from(io::ErrorKind::NotFound);
        let e = open_error(path, not_found(), Path::new("/nonexistent/metalearn"));
        let msg = e.to_string();
        assert!(matches!(&e, Error::Io { source, .. } if source.kind() == io::ErrorKind::NotFound));
        assert!(
            msg.contains("apt-get install dataset-fashion-mnist"),
            "{msg}"
        );
        assert!(msg.contains("t10k-images-idx3-ubyte"), "{msg}");
        // With the default directory present, the plain I/O error is kept.
        let e = open_error(path, not_found(), &std::env::temp_dir());
        assert!(!e.to_string().contains("apt-get"), "{e}");
    }
}
