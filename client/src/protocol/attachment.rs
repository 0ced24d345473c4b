//! Customers' attachments on the wire: what staff see of one ([`AttachmentInfo`]), the list
//! of a case's ([`AttachmentList`]) and one part of a file's bytes ([`AttachmentPart`]).
//!
//! A frame carries at most 64 KiB ([`crate::codec::MAX_FRAME_LEN`]) and an attachment may
//! be megabytes, so bytes always travel in parts of at most [`MAX_PART_BYTES`]: a customer
//! uploads with `AttachStart`, `AttachPart`s and `AttachFinish`; staff read with
//! `Attachment` requests at rising offsets until they hold `total` bytes.

use serde::{Deserialize, Serialize};

use super::case::Timestamp;
use crate::code::SessionCode;

/// The most bytes one part carries, either way: half a frame, so a part and its envelope
/// always fit one frame whatever bincode makes of the rest.
pub const MAX_PART_BYTES: usize = 32 * 1024;

/// The longest attachment file name kept, in characters (longer names are cut, keeping
/// their extension).
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 100;

/// The content types the daemon accepts, as it names them, decided by the file's first
/// bytes (never by its name or a client's word).
pub const ACCEPTED_TYPES: &str =
    "PNG, JPEG, GIF or WebP images, PDF documents and plain UTF-8 text";

/// A number with its thousands grouped by commas, as sizes are shown: `34,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// One attachment of a case, as staff see it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Its number in its case, from 1 in the order attached.
    pub id: u32,
    /// The file name the customer gave, cleaned (no folders, no control characters, at most
    /// [`MAX_ATTACHMENT_NAME_CHARS`]).
    pub name: String,
    /// The type the daemon found in its bytes: `image/png`, `image/jpeg`, `image/gif`,
    /// `image/webp`, `application/pdf` or `text/plain; charset=utf-8`.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the customer finished uploading it.
    pub attached_at: Timestamp,
}

/// A case's attachments, oldest first (a case holds few: see the daemon's
/// `max_attachments_per_case`, at most [`MAX_ATTACHMENTS_LISTED`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentList {
    /// The case.
    pub code: SessionCode,
    /// Its attachments.
    pub attachments: Vec<AttachmentInfo>,
}

/// The most attachments a case may be configured to hold: a list of that many always fits
/// one frame (each entry is at most about 450 bytes encoded).
pub const MAX_ATTACHMENTS_LISTED: u32 = 100;

/// Part of an attachment's bytes, from `offset`: a reader asks again from `offset +
/// bytes.len()` until it holds `total` bytes, and can check it got them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentPart {
    /// The case.
    pub code: SessionCode,
    /// The attachment's number in its case.
    pub id: u32,
    /// Where in the file these bytes start.
    pub offset: u64,
    /// The file's whole size.
    pub total: u64,
    /// At most [`MAX_PART_BYTES`] bytes; empty only at or past the end.
    #[serde(with = "part_bytes")]
    pub bytes: Vec<u8>,
}

/// Serializes a part's bytes as one byte string (not a sequence of numbers), and reads one
/// back refusing more than [`MAX_PART_BYTES`] before keeping any: a peer's announced length
/// is never trusted.
pub mod part_bytes {
    use serde::{Deserializer, Serializer};
    use std::fmt;

    use super::MAX_PART_BYTES;

    /// Writes `bytes` as a byte string.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// Reads a byte string of at most [`MAX_PART_BYTES`].
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> serde::de::Visitor<'de> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "at most {MAX_PART_BYTES} bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                if v.len() > MAX_PART_BYTES {
                    return Err(E::custom(format!(
                        "a part of {} bytes; at most {MAX_PART_BYTES}",
                        v.len()
                    )));
                }
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                self.visit_bytes(&v)
            }
            // Self-describing formats (JSON) hand bytes over as a sequence of numbers.
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut bytes = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    if bytes.len() == MAX_PART_BYTES {
                        return Err(serde::de::Error::custom(format!(
                            "a part of more than {MAX_PART_BYTES} bytes"
                        )));
                    }
                    bytes.push(b);
                }
                Ok(bytes)
            }
        }
        deserializer.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::protocol::{ClientMessage, Reply, Request, ServerMessage};

    #[test]
    fn a_full_part_fits_one_frame_both_ways_and_a_longer_one_is_refused() {
        let request = ClientMessage::Request(Request::AttachPart {
            upload: u64::MAX,
            bytes: vec![0xff; MAX_PART_BYTES],
        });
        let frame = codec::encode(&request).expect("fits");
        assert_eq!(
            codec::decode::<ClientMessage>(&frame[4..]).unwrap(),
            request
        );
        let reply = ServerMessage::Reply(Reply::AttachmentPart(AttachmentPart {
            code: SessionCode::from_number(1).unwrap(),
            id: u32::MAX,
            offset: u64::MAX,
            total: u64::MAX,
            bytes: vec![0xff; MAX_PART_BYTES],
        }));
        let frame = codec::encode(&reply).expect("fits");
        assert_eq!(codec::decode::<ServerMessage>(&frame[4..]).unwrap(), reply);

        let longer = ClientMessage::Request(Request::AttachPart {
            upload: 1,
            bytes: vec![0; MAX_PART_BYTES + 1],
        });
        let frame = codec::encode(&longer).expect("still under the frame limit");
        let refused = codec::decode::<ClientMessage>(&frame[4..]).expect_err("too long a part");
        assert!(refused.to_string().contains("at most"), "{refused}");
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(34_567), "34,567");
        assert_eq!(thousands(4_194_304), "4,194,304");
    }

    #[test]
    fn the_longest_list_fits_one_frame() {
        let widest = AttachmentInfo {
            id: u32::MAX,
            name: "\u{10ffff}".repeat(MAX_ATTACHMENT_NAME_CHARS),
            content_type: "text/plain; charset=utf-8".into(),
            size: u64::MAX,
            attached_at: Timestamp(u64::MAX),
        };
        let list = ServerMessage::Reply(Reply::Attachments(AttachmentList {
            code: SessionCode::from_number(1).unwrap(),
            attachments: vec![widest; MAX_ATTACHMENTS_LISTED as usize],
        }));
        codec::encode(&list).expect("fits one frame");
    }
}
