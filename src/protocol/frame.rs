//! Length-prefixed frames. The size is checked against socket.request.max.bytes before anything is allocated,
//! and the buffer then grows only as bytes actually arrive, so a client that announces a large frame and
//! sends nothing holds no memory.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Growth step while a frame arrives.
const READ_CHUNK_BYTES: usize = 64 * 1024;

#[derive(thiserror::Error, Debug)]
pub enum FrameError {
    #[error("frame of {size} bytes is larger than socket.request.max.bytes ({max})")]
    TooLarge { size: i64, max: usize },
    #[error("frame size {0} is negative or zero")]
    InvalidSize(i32),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Largest read buffer a connection keeps between frames; after a bigger frame it starts afresh.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// Reads one frame into `buffer` and splits it off. The connection passes the same buffer every time: once
/// the previous frame's bytes are dropped, its allocation is reused, so steady traffic allocates (and
/// page-faults) nothing per request. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    max_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size_bytes = [0u8; 4];
    match reader.read_exact(&mut size_bytes).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size_bytes);
    if size <= 0 {
        return Err(FrameError::InvalidSize(size));
    }
    let size = size as usize;
    if size > max_bytes {
        return Err(FrameError::TooLarge { size: size as i64, max: max_bytes });
    }
    if buffer.capacity() > KEEP_BUFFER_BYTES {
        *buffer = BytesMut::new();
    }
    buffer.clear();
    while buffer.len() < size {
        let want = (size - buffer.len()).min(READ_CHUNK_BYTES);
        buffer.reserve(want);
        let read = (&mut *reader).take(want as u64).read_buf(buffer).await?;
        if read == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(buffer.split().freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8], max: usize) -> Result<Option<Bytes>, FrameError> {
        let mut reader = input;
        read_frame(&mut reader, &mut BytesMut::new(), max).await
    }

    #[tokio::test]
    async fn reads_whole_frames_and_clean_eof() {
        let mut input = vec![0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9];
        let mut reader = &input[..];
        let mut buffer = BytesMut::new();
        let first = read_frame(&mut reader, &mut buffer, 100).await.unwrap().unwrap();
        let second = read_frame(&mut reader, &mut buffer, 100).await.unwrap().unwrap();
        // The first frame is still held: the buffer must not have overwritten it.
        assert_eq!(&first[..], &[1, 2, 3]);
        assert_eq!(&second[..], &[9]);
        assert!(read_frame(&mut reader, &mut buffer, 100).await.unwrap().is_none());
        input.truncate(5);
        assert!(matches!(read(&input, 100).await, Err(FrameError::Truncated)));
    }

    #[tokio::test]
    async fn rejects_bad_sizes_before_reading_the_body() {
        assert!(matches!(read(&[0x7f, 0xff, 0xff, 0xff], 1024).await, Err(FrameError::TooLarge { .. })));
        assert!(matches!(read(&[0xff, 0xff, 0xff, 0xff], 1024).await, Err(FrameError::InvalidSize(-1))));
        assert!(matches!(read(&[0, 0, 0, 0], 1024).await, Err(FrameError::InvalidSize(0))));
    }
}
