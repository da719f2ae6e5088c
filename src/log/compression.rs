//! Bounded decompression of record data (and compression, for batches we build ourselves).
//!
//! Every codec is read as a stream through [`LimitReader`], so a decompression bomb fails after
//! [`decompressed_limit`] bytes instead of exhausting memory; records are parsed straight from the stream.
//! - gzip: flate2, concatenated members accepted.
//! - snappy: the xerial/snappy-java framing the Java client writes (`\x82SNAPPY\0`, two version ints, then
//!   `[i32 length][raw block]...`) or one raw snappy block (librdkafka and others).
//! - lz4: the LZ4 frame format (lz4_flex::frame).
//! - zstd: ruzstd streaming decoder, after checking the frame's window size ourselves (ruzstd reserves the
//!   whole window up front).

use std::io::{self, Read, Write};

use super::batch::Compression;
use super::LogError;

/// Decompressed bytes allowed for any batch, on top of [`DECOMPRESSED_RATIO`] times its compressed size.
pub const DECOMPRESSED_BASE_BYTES: u64 = 64 << 20;
pub const DECOMPRESSED_RATIO: u64 = 256;
/// The largest zstd window we accept (window log 25, zstd levels up to 20).
pub const ZSTD_MAX_WINDOW_BYTES: u64 = 32 << 20;
/// Buffer between the decompressor and the record parser.
const STREAM_BUFFER_BYTES: usize = 32 << 10;

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_BYTES: usize = 16;
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

pub fn decompressed_limit(compressed_bytes: usize) -> u64 {
    DECOMPRESSED_BASE_BYTES.saturating_add(DECOMPRESSED_RATIO.saturating_mul(compressed_bytes as u64))
}

fn corrupt(msg: impl Into<String>) -> LogError {
    LogError::CorruptMessage(msg.into())
}

/// A buffered reader over the decompressed form of `data`, failing once it yields more than `limit` bytes.
pub(crate) fn decoder<'a>(
    codec: Compression,
    data: &'a [u8],
    limit: u64,
) -> Result<io::BufReader<LimitReader<Box<dyn Read + 'a>>>, LogError> {
    let inner: Box<dyn Read + 'a> = match codec {
        Compression::None => Box::new(data),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Compression::Snappy => {
            if data.starts_with(XERIAL_MAGIC) {
                Box::new(XerialReader::new(data, limit)?)
            } else {
                let len = snap::raw::decompress_len(data).map_err(|e| corrupt(format!("snappy: {e}")))?;
                if len as u64 > limit {
                    return Err(corrupt(format!("snappy block of {len} bytes exceeds the decompression limit {limit}")));
                }
                let out = snap::raw::Decoder::new().decompress_vec(data).map_err(|e| corrupt(format!("snappy: {e}")))?;
                Box::new(io::Cursor::new(out))
            }
        }
        Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        Compression::Zstd => {
            check_zstd_window(data)?;
            let dec = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| corrupt(format!("zstd: {e}")))?;
            Box::new(dec)
        }
    };
    Ok(io::BufReader::with_capacity(STREAM_BUFFER_BYTES, LimitReader { inner, remaining: limit, limit }))
}

pub(crate) struct LimitReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("decompressed data exceeds the limit of {} bytes", self.limit),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// snappy-java's stream framing: a 16-byte header, then length-prefixed raw snappy blocks.
struct XerialReader<'a> {
    data: &'a [u8],
    pos: usize,
    block: Vec<u8>,
    block_pos: usize,
    budget: u64,
    decoder: snap::raw::Decoder,
}

impl<'a> XerialReader<'a> {
    fn new(data: &'a [u8], budget: u64) -> Result<Self, LogError> {
        if data.len() < XERIAL_HEADER_BYTES {
            return Err(corrupt("snappy-java stream header is truncated"));
        }
        Ok(XerialReader { data, pos: XERIAL_HEADER_BYTES, block: Vec::new(), block_pos: 0, budget, decoder: snap::raw::Decoder::new() })
    }

    fn next_block(&mut self) -> io::Result<bool> {
        let bad = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
        loop {
            if self.pos == self.data.len() {
                return Ok(false);
            }
            let len_bytes = self.data.get(self.pos..self.pos + 4).ok_or_else(|| bad("snappy-java block length is truncated".into()))?;
            let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
            let start = self.pos + 4;
            if len < 0 || len as usize > self.data.len() - start {
                return Err(bad(format!("snappy-java block length {len} exceeds the {} bytes left", self.data.len() - start)));
            }
            let compressed = &self.data[start..start + len as usize];
            self.pos = start + len as usize;
            let out_len = snap::raw::decompress_len(compressed).map_err(|e| bad(format!("snappy: {e}")))?;
            if out_len as u64 > self.budget {
                return Err(bad("snappy-java blocks exceed the decompression limit".into()));
            }
            self.budget -= out_len as u64;
            self.block.resize(out_len, 0);
            self.decoder.decompress(compressed, &mut self.block).map_err(|e| bad(format!("snappy: {e}")))?;
            self.block_pos = 0;
            if out_len > 0 {
                return Ok(true);
            }
        }
    }
}

impl Read for XerialReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.block_pos == self.block.len() && !self.next_block()? {
            return Ok(0);
        }
        let n = buf.len().min(self.block.len() - self.block_pos);
        buf[..n].copy_from_slice(&self.block[self.block_pos..self.block_pos + n]);
        self.block_pos += n;
        Ok(n)
    }
}

/// Rejects zstd frames whose window would make the decoder reserve more than [`ZSTD_MAX_WINDOW_BYTES`].
fn check_zstd_window(data: &[u8]) -> Result<(), LogError> {
    const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    if data.len() < 6 || data[..4] != MAGIC {
        return Err(corrupt("zstd data does not start with a zstd frame"));
    }
    let descriptor = data[4];
    let fcs_flag = descriptor >> 6;
    let single_segment = descriptor & 0x20 != 0;
    let window = if single_segment {
        // No window descriptor: the window is the frame content size.
        let dict_bytes = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
        let fcs_bytes = [1usize, 2, 4, 8][usize::from(fcs_flag)];
        let start = 5 + dict_bytes;
        let fcs = data.get(start..start + fcs_bytes).ok_or_else(|| corrupt("zstd frame header is truncated"))?;
        let mut v: u64 = 0;
        for (i, b) in fcs.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        if fcs_bytes == 2 {
            v += 256;
        }
        v
    } else {
        let wd = data[5];
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        base + (base / 8) * u64::from(wd & 7)
    };
    if window > ZSTD_MAX_WINDOW_BYTES {
        return Err(corrupt(format!("zstd window of {window} bytes exceeds the limit of {ZSTD_MAX_WINDOW_BYTES}")));
    }
    Ok(())
}

/// Compresses record data with `codec` in the format Kafka clients read.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, LogError> {
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(data)?;
            Ok(enc.finish()?)
        }
        Compression::Snappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut enc = snap::raw::Encoder::new();
            for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
                let block = enc.compress_vec(chunk).map_err(|e| io::Error::other(e.to_string()))?;
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Compression::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            enc.write_all(data)?;
            enc.finish().map_err(|e| LogError::Io(io::Error::other(e.to_string())))
        }
        Compression::Zstd => Ok(ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codec: Compression, data: &[u8]) -> Vec<u8> {
        let compressed = compress(codec, data).unwrap();
        let mut out = Vec::new();
        decoder(codec, &compressed, decompressed_limit(compressed.len())).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..100_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        for codec in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            assert_eq!(round_trip(codec, &data), data, "{codec:?}");
            assert_eq!(round_trip(codec, b""), b"", "{codec:?}");
        }
    }

    #[test]
    fn raw_snappy_is_accepted() {
        let data = b"hello hello hello hello".repeat(100);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let mut out = Vec::new();
        decoder(Compression::Snappy, &raw, 1 << 20).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert!(decoder(Compression::Snappy, &raw, 100).is_err(), "raw block over the limit");
    }

    #[test]
    fn limit_stops_bombs() {
        let zeros = vec![0u8; 4 << 20];
        for codec in [Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let compressed = compress(codec, &zeros).unwrap();
            let mut out = Vec::new();
            let res = decoder(codec, &compressed, 1 << 20).and_then(|mut d| d.read_to_end(&mut out).map_err(LogError::Io));
            assert!(res.is_err(), "{codec:?} must stop at the limit");
            assert!(out.len() <= 1 << 20);
        }
    }

    #[test]
    fn zstd_window_is_bounded() {
        // Frame header: magic, descriptor without single segment, window descriptor log 10+31.
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 31 << 3, 0, 0, 0];
        assert!(check_zstd_window(&frame).is_err());
        let frame = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 10 << 3, 0, 0, 0];
        assert!(check_zstd_window(&frame).is_ok());
        assert!(check_zstd_window(&[0x28, 0xb5]).is_err());
    }
}
