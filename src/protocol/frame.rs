//! Length-prefixed frames. The size is checked against socket.request.max.bytes before anything is allocated,
//! and the buffer then grows only as bytes actually arrive, so a client that announces a large frame and
//! sends nothing holds no memory.

use bytes::BytesMut;
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

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<Option<BytesMut>, FrameError> {
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
    let mut frame = BytesMut::with_capacity(size.min(READ_CHUNK_BYTES));
    while frame.len() < size {
        let want = (size - frame.len()).min(READ_CHUNK_BYTES);
        frame.reserve(want);
        let read = (&mut *reader).take(want as u64).read_buf(&mut frame).await?;
        if read == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8], max: usize) -> Result<Option<BytesMut>, FrameError> {
        let mut reader = input;
        read_frame(&mut reader, max).await
    }

    #[tokio::test]
    async fn reads_whole_frames_and_clean_eof() {
        let mut input = vec![0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9];
        let mut reader = &input[..];
        assert_eq!(&read_frame(&mut reader, 100).await.unwrap().unwrap()[..], &[1, 2, 3]);
        assert_eq!(&read_frame(&mut reader, 100).await.unwrap().unwrap()[..], &[9]);
        assert!(read_frame(&mut reader, 100).await.unwrap().is_none());
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
