//! Customers' uploads in progress: the parts of a file arriving over many requests, held
//! with their connection until `AttachFinish` hands the whole file to the core.
//!
//! Nothing here grows without bound. A connection holds at most one upload (a new start
//! drops the unfinished one), of at most `max_attachment_bytes` (checked by the core at
//! the start), and it is dropped with its connection. All uploads together hold at most
//! `max_upload_bytes_in_flight`: a start reserves its whole announced size, and a start
//! that finds no room is told to try again in a moment, so a crowd of slow or abandoned
//! uploads costs a bounded amount of memory. A part past the announced size is refused.

use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use sosq::SessionCode;

use super::ServerError;
use crate::broker::{BrokerError, PartyId};

/// One connection's upload in progress.
#[derive(Debug)]
pub struct Upload {
    /// Its number, which its parts and finish name.
    pub id: u64,
    /// The case it is for.
    pub code: SessionCode,
    /// The code as the customer typed it, for the core's checks at the finish.
    pub typed: String,
    /// The resume secret the start proved ownership with, if any.
    pub secret: Option<String>,
    /// The file's name as given (the core cleans it).
    pub name: String,
    /// The size announced at the start, reserved against the total.
    pub size: u64,
    /// What arrived so far.
    pub bytes: Vec<u8>,
}

/// Every connection's upload in progress, and the bytes they reserve together.
#[derive(Default)]
pub struct Uploads {
    by_party: DashMap<PartyId, Upload>,
    /// Sum of the sizes the uploads in `by_party` announced.
    reserved: AtomicU64,
    /// The last upload number handed out.
    last_id: AtomicU64,
}

/// What a connection is told when it names an upload it does not hold.
fn no_such_upload(upload: u64) -> ServerError {
    BrokerError::InvalidInput(format!(
        "no upload {upload} on this connection (it finished, failed, or a newer one replaced it); start again with the file"
    ))
    .into()
}

impl Uploads {
    /// Begins an upload for `party` (dropping any unfinished one it had), reserving `size`
    /// bytes of `most_in_flight`. Returns its number.
    ///
    /// Errors: [`ServerError::Busy`] when the reservation does not fit.
    pub fn start(
        &self,
        party: PartyId,
        upload: NewUpload,
        most_in_flight: u64,
    ) -> Result<u64, ServerError> {
        self.drop_party(party);
        let size = upload.size;
        let reserved = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(size)
                    .filter(|&total| total <= most_in_flight)
            });
        if reserved.is_err() {
            return Err(ServerError::Busy(
                "the daemon is receiving many files right now; try again in a minute".into(),
            ));
        }
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.by_party.insert(
            party,
            Upload {
                id,
                code: upload.code,
                typed: upload.typed,
                secret: upload.secret,
                name: upload.name,
                size,
                bytes: Vec::new(),
            },
        );
        Ok(id)
    }

    /// Appends a part to `party`'s upload `id`. Returns the bytes received so far. The
    /// first part must begin a file of an accepted type (checked by `first`), so a wrong
    /// file stops at its first part, not its last.
    ///
    /// Errors: no such upload; more bytes than announced; a refused first part. Each
    /// drops the upload (the customer starts again), but the first.
    pub fn part(
        &self,
        party: PartyId,
        id: u64,
        bytes: &[u8],
        first: impl FnOnce(&[u8]) -> Result<(), BrokerError>,
    ) -> Result<u64, ServerError> {
        let refused = {
            let mut held = match self.by_party.get_mut(&party) {
                Some(held) if held.id == id => held,
                _ => return Err(no_such_upload(id)),
            };
            let received = held.bytes.len() as u64;
            let after = received.saturating_add(bytes.len() as u64);
            if after > held.size {
                BrokerError::InvalidInput(format!(
                    "the file has more bytes than the {} announced; the upload was dropped",
                    held.size
                ))
            } else {
                let judged = if received == 0 { first(bytes) } else { Ok(()) };
                match judged {
                    Err(refusal) => refusal,
                    Ok(()) => {
                        if held.bytes.capacity() == 0 {
                            // Reserved already; growing by doubling would copy it over and
                            // over and may overshoot the size.
                            let size = usize::try_from(held.size).unwrap_or(0);
                            held.bytes.reserve_exact(size);
                        }
                        held.bytes.extend_from_slice(bytes);
                        return Ok(after);
                    }
                }
            }
        };
        self.drop_party(party);
        Err(refused.into())
    }

    /// Takes `party`'s upload `id` out once every announced byte arrived, releasing its
    /// reservation.
    ///
    /// Errors: no such upload; bytes missing (the upload stays, to be completed).
    pub fn finish(&self, party: PartyId, id: u64) -> Result<Upload, ServerError> {
        match self.by_party.get(&party) {
            Some(held) if held.id == id => {
                if held.bytes.len() as u64 != held.size {
                    return Err(BrokerError::InvalidInput(format!(
                        "the upload has {} of the {} bytes announced; send the rest first",
                        held.bytes.len(),
                        held.size
                    ))
                    .into());
                }
            }
            _ => return Err(no_such_upload(id)),
        }
        match self.by_party.remove(&party) {
            Some((_, upload)) => {
                self.reserved.fetch_sub(upload.size, Ordering::AcqRel);
                Ok(upload)
            }
            None => Err(no_such_upload(id)),
        }
    }

    /// Drops `party`'s upload, if any (a new start, a refusal, its connection's end).
    pub fn drop_party(&self, party: PartyId) {
        if let Some((_, upload)) = self.by_party.remove(&party) {
            self.reserved.fetch_sub(upload.size, Ordering::AcqRel);
        }
    }

    /// Bytes reserved by the uploads in progress.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }
}

/// What an upload begins with (after the core's checks).
#[derive(Debug)]
pub struct NewUpload {
    /// The case.
    pub code: SessionCode,
    /// The code as typed.
    pub typed: String,
    /// The resume secret, if the start proved ownership with it.
    pub secret: Option<String>,
    /// The file's name as given.
    pub name: String,
    /// Its announced size.
    pub size: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(size: u64) -> NewUpload {
        NewUpload {
            code: SessionCode::from_number(1).unwrap(),
            typed: "s000-000-001".into(),
            secret: None,
            name: "a.txt".into(),
            size,
        }
    }

    fn any(_: &[u8]) -> Result<(), BrokerError> {
        Ok(())
    }

    #[test]
    fn uploads_reserve_their_size_together_and_release_it_however_they_end() {
        let uploads = Uploads::default();
        let (one, two, three) = (PartyId(1), PartyId(2), PartyId(3));
        let first = uploads.start(one, new(60), 100).unwrap();
        assert!(matches!(
            uploads.start(two, new(41), 100),
            Err(ServerError::Busy(_))
        ));
        let second = uploads.start(two, new(40), 100).unwrap();
        assert_eq!(uploads.reserved(), 100);
        // A new start replaces the unfinished one and its reservation.
        let replaced = uploads.start(one, new(10), 100).unwrap();
        assert_eq!(uploads.reserved(), 50);
        assert!(
            uploads.part(one, first, b"x", any).is_err(),
            "the old one is gone"
        );
        // Finishing, a refusal and a connection's end each release.
        assert_eq!(uploads.part(one, replaced, &[b'a'; 10], any).unwrap(), 10);
        let done = uploads.finish(one, replaced).unwrap();
        assert_eq!(done.bytes, vec![b'a'; 10]);
        assert_eq!(uploads.reserved(), 40);
        assert!(
            uploads.part(two, second, &[0; 41], any).is_err(),
            "past the size"
        );
        assert_eq!(uploads.reserved(), 0);
        uploads.start(three, new(5), 100).unwrap();
        uploads.drop_party(three);
        assert_eq!(uploads.reserved(), 0);
    }

    #[test]
    fn a_finish_waits_for_every_byte_and_a_wrong_first_part_stops_the_upload() {
        let uploads = Uploads::default();
        let party = PartyId(1);
        let id = uploads.start(party, new(4), 100).unwrap();
        uploads.part(party, id, b"ab", any).unwrap();
        let early = uploads.finish(party, id).unwrap_err();
        assert!(early.to_string().contains("2 of the 4"), "{early}");
        uploads.part(party, id, b"cd", any).unwrap();
        assert_eq!(uploads.finish(party, id).unwrap().bytes, b"abcd");

        let id = uploads.start(party, new(4), 100).unwrap();
        let refuse = |_: &[u8]| Err(BrokerError::InvalidInput("not accepted".into()));
        let refused = uploads.part(party, id, b"\0\0", refuse).unwrap_err();
        assert!(refused.to_string().contains("not accepted"), "{refused}");
        assert_eq!(uploads.reserved(), 0);
        // Only the first part is judged.
        let id = uploads.start(party, new(4), 100).unwrap();
        uploads.part(party, id, b"ab", any).unwrap();
        uploads.part(party, id, b"\0\0", refuse).unwrap();
    }
}
