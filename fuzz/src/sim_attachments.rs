//! The fuzz simulation's customers' uploads and staff's reads of attachments, as
//! `server::attachments` and `server::uploads` run them (included by `lib.rs`).

use sosq::protocol::{Reply, Request};
use sosqd::broker::{may_begin_accepted, AttachmentBytes, BrokerError, Effect, NewAttachment};
use sosqd::server::Caller;

use super::Sim;

/// An upload in progress: the start's code, secret, name and size, and the bytes so far.
pub(super) struct Upload {
    pub(super) typed: String,
    pub(super) secret: Option<String>,
    name: String,
    pub(super) size: u64,
    bytes: Vec<u8>,
}

impl Sim {
    /// A step of an upload, as `server::attachments` and `server::uploads` run it: the
    /// core's checks at the start, the first part's type, every byte before the finish.
    pub(super) fn upload(
        &mut self,
        caller: &Caller,
        request: Request,
        out: &mut Vec<Effect>,
    ) -> Result<Reply, BrokerError> {
        let party = caller.party;
        let held = self.uploads.iter().position(|(p, _)| *p == party);
        match request {
            Request::AttachStart {
                code,
                resume_secret,
                name,
                size,
            } => {
                if let Some(held) = held {
                    self.uploads.remove(held);
                }
                self.broker
                    .may_attach(party, &code, resume_secret.as_deref(), &name, size)?;
                self.uploads.push((
                    party,
                    Upload {
                        typed: code,
                        secret: resume_secret,
                        name,
                        size,
                        bytes: Vec::new(),
                    },
                ));
                Ok(Reply::UploadStarted { upload: 1 })
            }
            Request::AttachPart { upload, bytes } => {
                let Some(held) = held.filter(|_| upload == 1) else {
                    return Err(BrokerError::InvalidInput("no such upload".into()));
                };
                let current = &mut self.uploads[held].1;
                let fits = current.bytes.len() as u64 + bytes.len() as u64 <= current.size;
                let judged = match current.bytes.is_empty() {
                    true => may_begin_accepted(&bytes),
                    false => Ok(()),
                };
                match (fits, judged) {
                    (true, Ok(())) => {
                        current.bytes.extend_from_slice(&bytes);
                        let received = current.bytes.len() as u64;
                        Ok(Reply::UploadReceived { upload, received })
                    }
                    (_, refused) => {
                        self.uploads.remove(held);
                        refused?;
                        Err(BrokerError::InvalidInput("past the size".into()))
                    }
                }
            }
            Request::AttachFinish { upload } => {
                let Some(held) = held.filter(|_| upload == 1) else {
                    return Err(BrokerError::InvalidInput("no such upload".into()));
                };
                let current = &self.uploads[held].1;
                if current.bytes.len() as u64 != current.size {
                    return Err(BrokerError::InvalidInput("bytes missing".into()));
                }
                let (_, file) = self.uploads.remove(held);
                let new = NewAttachment {
                    name: &file.name,
                    bytes: AttachmentBytes::new(file.bytes),
                };
                let info = self.broker.attach(
                    self.now,
                    party,
                    &file.typed,
                    file.secret.as_deref(),
                    new,
                    out,
                )?;
                Ok(Reply::AttachmentAdded(info))
            }
            _ => Err(BrokerError::InvalidInput("not an upload".into())),
        }
    }

    /// Staff's reads of attachments, from the simulated store.
    pub(super) fn attachments_read(&self, request: Request) -> Result<Reply, BrokerError> {
        let (typed, wanted) = match &request {
            Request::Attachments { code } => (code, None),
            Request::Attachment { code, id, offset } => (code, Some((*id, *offset))),
            _ => return Err(BrokerError::InvalidInput("not a read".into())),
        };
        let code = self.staff_view(typed)?.code;
        let mut held = self.attachments.iter().filter(|(c, _)| *c == code);
        match wanted {
            None => Ok(Reply::Attachments(sosq::protocol::AttachmentList {
                code,
                attachments: held.map(|(_, a)| a.info.clone()).collect(),
            })),
            Some((id, offset)) => {
                let (_, found) = held
                    .find(|(_, a)| a.info.id == id)
                    .ok_or_else(|| BrokerError::InvalidInput("no such attachment".into()))?;
                let bytes = found.bytes.as_slice();
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                let end = (start + sosq::protocol::MAX_PART_BYTES).min(bytes.len());
                Ok(Reply::AttachmentPart(sosq::protocol::AttachmentPart {
                    code,
                    id,
                    offset,
                    total: bytes.len() as u64,
                    bytes: bytes[start..end].to_vec(),
                }))
            }
        }
    }
}
