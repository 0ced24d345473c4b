//! Control-stream framing: a 4-byte big-endian length, then one bincode 2 message.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before a single payload byte is read, and
//! the payload is decoded with bincode's own size limit, so a peer can never make us
//! allocate more than one frame's worth. This is the only module that touches bincode.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload a frame may carry, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Announced length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The payload is not a valid message.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The stream ended in the middle of a frame.
    #[error("stream ended in the middle of a frame")]
    Truncated,
    /// Reading or writing the stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes `msg` as one frame, length prefix included.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let payload = bincode::serde::encode_to_vec(msg, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLong {
            len: payload.len(),
            max: MAX_FRAME_LEN,
        });
    }
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Decodes one frame's payload (without its length prefix); trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames.
pub async fn read_frame<T, R>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut prefix = [0u8; 4];
    let mut filled = 0;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    decode(&payload).map(Some)
}

/// Writes `msg` as one frame.
pub async fn write_frame<T, W>(writer: &mut W, msg: &T) -> Result<(), FrameError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = encode(msg)?;
    writer.write_all(&frame).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientMessage, Request, PROTOCOL_VERSION};

    #[tokio::test]
    async fn round_trips_a_message() {
        let msg = ClientMessage::Request(Request::OpenSos {
            customer: "Ana".into(),
            description: "printer on fire".into(),
            priority: Default::default(),
            group: None,
        });
        let frame = encode(&msg).unwrap();
        let mut reader = frame.as_slice();
        let back: Option<ClientMessage> = read_frame(&mut reader).await.unwrap();
        assert_eq!(back, Some(msg));
        let end: Option<ClientMessage> = read_frame(&mut reader).await.unwrap();
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn refuses_oversized_length_before_reading_payload() {
        let frame = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        let mut reader = frame.as_slice();
        let err = read_frame::<ClientMessage, _>(&mut reader)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::TooLong { .. }), "{err}");
    }

    #[tokio::test]
    async fn refuses_garbage_and_truncation() {
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff]);
        let err = read_frame::<ClientMessage, _>(&mut garbage.as_slice())
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");

        let hello = encode(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            token: None,
        })
        .unwrap();
        let cut = &hello[..hello.len() - 1];
        let err = read_frame::<ClientMessage, _>(&mut &cut[..])
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
    }

    #[test]
    fn a_tiny_frame_announcing_a_huge_code_list_is_refused_without_reserving_for_it() {
        use crate::protocol::{DeleteSelector, MAX_CODES_PER_DELETE};
        let empty = ClientMessage::Request(Request::Delete(DeleteSelector::Codes(vec![])));
        let frame = encode(&empty).unwrap();
        let mut payload = frame[4..frame.len() - 1].to_vec();
        payload.push(253);
        payload.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<ClientMessage>(&payload).is_err());

        let too_many = vec![crate::SessionCode::from_number(1).unwrap(); MAX_CODES_PER_DELETE + 1];
        let message = ClientMessage::Request(Request::Delete(DeleteSelector::Codes(too_many)));
        let frame = encode(&message).unwrap();
        let err = decode::<ClientMessage>(&frame[4..]).unwrap_err();
        assert!(err.to_string().contains("more than"), "{err}");
    }

    #[test]
    fn refuses_trailing_bytes() {
        let frame = encode(&ClientMessage::Request(Request::Queue)).unwrap();
        let mut payload = frame[4..].to_vec();
        payload.push(0);
        assert!(decode::<ClientMessage>(&payload).is_err());
    }
}
