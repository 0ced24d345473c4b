//! Control-stream framing: a 4-byte big-endian length, then one bincode 2 message.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before a single payload byte is read, the
//! payload buffer grows with what actually arrives (a peer announcing 64 KiB and sending one
//! byte holds one byte, not 64 KiB), a frame that has begun must be complete within a
//! deadline ([`read_frame_within`]), and the payload is decoded with bincode's own size
//! limit ([`MAX_DECODE_CLAIM`]), so a peer can never make us hold more than a few frames'
//! worth, nor hold it for ever. [`PageBudget`] lets a sender fill a page of a list up to
//! what one frame can carry.
//! This is the only module that touches bincode.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest payload a frame may carry, in bytes.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// The most bytes bincode may claim while decoding one frame's payload.
///
/// bincode counts a claim by what a value takes in memory as it is decoded (8 bytes for
/// every `u64` and every length, 4 for every enum tag), not by the bytes it reads, and a
/// varint takes as little as one byte on the wire: a payload may claim up to 8 times its
/// length. A limit of [`MAX_FRAME_LEN`] itself refused frames that the sender had measured
/// as fitting (a page of 500 small cases: 57 KiB on the wire, over 64 KiB claimed), and the
/// client dropped the connection. So the limit is the most any payload of at most
/// [`MAX_FRAME_LEN`] bytes can claim: every frame [`encode`] lets through decodes, and a
/// length field still cannot make the decoder reserve more than this.
pub const MAX_DECODE_CLAIM: usize = 8 * MAX_FRAME_LEN;

fn config() -> impl bincode::config::Config {
    // The limit only binds decoding; encoding checks the payload's length itself.
    bincode::config::standard().with_limit::<MAX_DECODE_CLAIM>()
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
    /// A frame was begun but not finished within the deadline.
    #[error("a frame was begun but not finished within {}s", .0.as_secs())]
    Stalled(std::time::Duration),
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

/// How long a frame may take from its first byte to its last on the daemon's side:
/// generous for a bad network (a full 64 KiB frame at 10 KiB/s takes under 7 s), short
/// enough that a peer dripping bytes cannot hold a connection and its buffer for ever.
pub const FRAME_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads one frame, however long it takes; `Ok(None)` when the stream ends cleanly
/// between frames. For reading a peer one trusts to finish its frames (the daemon);
/// the daemon reads its clients with [`read_frame_within`].
pub async fn read_frame<T, R>(reader: &mut R) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_bounded(reader, None).await
}

/// Reads one frame; `Ok(None)` when the stream ends cleanly between frames. Waiting for a
/// frame to begin takes as long as it takes (a party may stay quiet between requests), but
/// once its first byte is in, the rest must arrive within `deadline` or the read fails
/// with [`FrameError::Stalled`]. Needs a tokio runtime with time enabled.
pub async fn read_frame_within<T, R>(
    reader: &mut R,
    deadline: std::time::Duration,
) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    read_frame_bounded(reader, Some(deadline)).await
}

async fn read_frame_bounded<T, R>(
    reader: &mut R,
    deadline: Option<std::time::Duration>,
) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let payload = match deadline {
        None => read_rest(reader, first[0]).await?,
        Some(deadline) => tokio::time::timeout(deadline, read_rest(reader, first[0]))
            .await
            .map_err(|_| FrameError::Stalled(deadline))??,
    };
    decode(&payload).map(Some)
}

/// The rest of a frame whose first byte was `first`: the length prefix, checked before any
/// payload is read, then the payload in a buffer that grows with what arrives rather than
/// to what the prefix announces.
async fn read_rest<R: AsyncRead + Unpin>(reader: &mut R, first: u8) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [first, 0, 0, 0];
    let mut filled = 1;
    while filled < prefix.len() {
        match reader.read(&mut prefix[filled..]).await? {
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
    let mut payload = Vec::with_capacity(len.min(4096));
    let read = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut payload)
        .await?;
    if read < len {
        return Err(FrameError::Truncated);
    }
    Ok(payload)
}

/// The bytes `value` takes encoded (inside a frame, without the length prefix).
pub fn encoded_len<T: Serialize>(value: &T) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer(value, &mut size, config()) {
        Ok(()) => size.bytes_written,
        // Only a value past the frame limit fails to encode; it fits no page.
        Err(_) => usize::MAX,
    }
}

/// Fills one page of a list: admits items while their encoded size stays within
/// [`crate::protocol::MAX_PAGE_BYTES`] and the count within the page's item limit. The
/// first item is always admitted, so a page always makes progress (every item is far
/// below the budget; `tests` in the daemon check the largest one of each kind).
#[derive(Debug)]
pub struct PageBudget {
    items: usize,
    max_items: usize,
    bytes: usize,
}

impl PageBudget {
    /// A budget for at most `max_items` items.
    pub fn new(max_items: usize) -> PageBudget {
        PageBudget {
            items: 0,
            max_items: max_items.max(1),
            bytes: 0,
        }
    }

    /// Whether `item` still fits on this page; if so it is counted.
    pub fn admit<T: Serialize>(&mut self, item: &T) -> bool {
        if self.items >= self.max_items {
            return false;
        }
        let len = encoded_len(item);
        if self.items > 0 && self.bytes.saturating_add(len) > crate::protocol::MAX_PAGE_BYTES {
            return false;
        }
        self.items += 1;
        self.bytes = self.bytes.saturating_add(len);
        true
    }
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

    #[tokio::test(start_paused = true)]
    async fn a_frame_begun_and_not_finished_in_time_stalls() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        // Announce 64 KiB, send one byte of it, then nothing.
        client
            .write_all(&(MAX_FRAME_LEN as u32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&[0]).await.unwrap();
        let err = read_frame_within::<ClientMessage, _>(&mut server, FRAME_DEADLINE)
            .await
            .unwrap_err();
        assert!(matches!(err, FrameError::Stalled(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_peer_between_frames_is_not_a_stall() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let read = tokio::spawn(async move {
            read_frame_within::<ClientMessage, _>(&mut server, FRAME_DEADLINE).await
        });
        tokio::time::sleep(FRAME_DEADLINE * 3).await;
        let frame = encode(&ClientMessage::Request(Request::Queue {
            after: None,
            limit: 0,
        }))
        .unwrap();
        client.write_all(&frame).await.unwrap();
        assert!(read.await.unwrap().unwrap().is_some());
    }

    #[test]
    fn a_page_stops_at_its_item_limit_or_its_byte_budget() {
        let mut budget = PageBudget::new(3);
        assert!((0..3).all(|_| budget.admit(&"small")));
        assert!(!budget.admit(&"small"), "item limit");
        let big = "x".repeat(crate::protocol::MAX_PAGE_BYTES / 2);
        let mut budget = PageBudget::new(100);
        assert!(budget.admit(&big));
        assert!(!budget.admit(&big), "byte budget");
        assert!(budget.admit(&"tiny"), "a smaller item may still fit");
        let huge = "x".repeat(crate::protocol::MAX_PAGE_BYTES * 2);
        assert!(
            PageBudget::new(5).admit(&huge),
            "the first item always goes in"
        );
    }

    /// Small items claim far more while decoding than they take on the wire (8 bytes for a
    /// one-byte number), so a page filled to its byte budget with the smallest must decode.
    #[test]
    fn a_page_full_of_the_smallest_items_decodes() {
        use crate::protocol::{Priority, QueueEntry, QueuePage, Reply, ServerMessage, Timestamp};
        let smallest = QueueEntry {
            position: Some(1),
            code: crate::SessionCode::from_number(1).unwrap(),
            customer: "a".into(),
            description: String::new(),
            waiting_since: Timestamp(0),
            priority: Priority::Normal,
            response_due: Timestamp(0),
            group: "g".into(),
            assigned_to: None,
            online: true,
            last_message: None,
            attachments: 0,
        };
        let mut budget = PageBudget::new(usize::MAX);
        let entries: Vec<QueueEntry> = std::iter::repeat(smallest)
            .take_while(|entry| budget.admit(entry))
            .collect();
        assert!(entries.len() > 1_000, "{} entries", entries.len());
        let page = ServerMessage::Reply(Reply::Queue(QueuePage {
            entries,
            online: u32::MAX,
            offline: u32::MAX,
            next: None,
        }));
        let frame = encode(&page).unwrap();
        assert_eq!(decode::<ServerMessage>(&frame[4..]).unwrap(), page);
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
        let frame = encode(&ClientMessage::Request(Request::Queue {
            after: None,
            limit: 0,
        }))
        .unwrap();
        let mut payload = frame[4..].to_vec();
        payload.push(0);
        assert!(decode::<ClientMessage>(&payload).is_err());
    }
}
