//! Customers' messages and attachments in the shell: a message charged to its case's
//! budget before the core takes it, an upload's steps (start, parts, finish) kept with the
//! connection (`uploads.rs`) until the core attaches the whole file, and staff reading a
//! case's attachments from the store.

use sosq::protocol::{AttachmentList, AttachmentPart, Reply, Request, MAX_PART_BYTES};
use sosq::SessionCode;

use super::commands;
use super::dispatch::Caller;
use super::uploads::NewUpload;
use super::{ServerError, Shared};
use crate::broker::{may_begin_accepted, AttachmentBytes, BrokerError, NewAttachment};

/// A customer's message: refused while its case's budget is spent, else the core command,
/// charged to the case once taken (so a stranger's refused try spends nothing, and learns
/// nothing of the budget).
pub(super) async fn add_message(
    shared: &Shared,
    caller: &Caller,
    request: Request,
) -> Result<Reply, ServerError> {
    let Request::AddMessage {
        code: typed,
        resume_secret,
        ..
    } = &request
    else {
        return Err(BrokerError::InvalidInput("a message names a case".into()).into());
    };
    // Whose case it is first: a stranger is told so, never whether the case's budget is
    // spent (which would say the code is a case's).
    let code = shared
        .broker()
        .customer_view(caller.party, typed, resume_secret.as_deref())?
        .code;
    let now = tokio::time::Instant::now();
    if let Err(wait) = shared.throttle().message_wait(code, now) {
        let per_minute = shared.config().customer_messages_per_minute;
        return Err(ServerError::Busy(format!(
            "case {code} takes at most {per_minute} messages a minute; wait {} and send it again",
            crate::broker::humanize(std::time::Duration::from_secs(wait.as_secs() + 1))
        )));
    }
    let (answer, report) = shared
        .execute(&caller.actor(), |b, now, out| {
            commands::command(b, caller, &request, now, out)
        })
        .await?;
    shared
        .throttle()
        .message_sent(code, tokio::time::Instant::now());
    Ok(answer.once_committed(&report))
}

/// One step of a customer's upload.
pub(super) async fn upload(
    shared: &Shared,
    caller: &Caller,
    request: Request,
) -> Result<Reply, ServerError> {
    let party = caller.party;
    match request {
        Request::AttachStart {
            code: typed,
            resume_secret,
            name,
            size,
        } => {
            // The core's checks first, so nobody sends megabytes to be refused at the end.
            let (code, _) =
                shared
                    .broker()
                    .may_attach(party, &typed, resume_secret.as_deref(), &name, size)?;
            let most = shared.config().max_upload_bytes_in_flight;
            let new = NewUpload {
                code,
                typed,
                secret: resume_secret,
                name,
                size,
            };
            let upload = shared.uploads.start(party, new, most)?;
            Ok(Reply::UploadStarted { upload })
        }
        Request::AttachPart { upload, bytes } => {
            let received = shared
                .uploads
                .part(party, upload, &bytes, may_begin_accepted)?;
            Ok(Reply::UploadReceived { upload, received })
        }
        Request::AttachFinish { upload } => {
            let file = shared.uploads.finish(party, upload)?;
            let bytes = AttachmentBytes::new(file.bytes);
            let (info, _) = shared
                .execute(&caller.actor(), |b, now, out| {
                    let new = NewAttachment {
                        name: &file.name,
                        bytes,
                    };
                    b.attach(now, party, &file.typed, file.secret.as_deref(), new, out)
                })
                .await?;
            tracing::info!(code = %file.code, size = info.size, kind = %info.content_type, "customer attached a file");
            Ok(Reply::AttachmentAdded(info))
        }
        _ => Err(BrokerError::InvalidInput("not a step of an upload".into()).into()),
    }
}

/// Staff reading a case's attachments (open, closed or expired): the list, or part of one
/// file's bytes.
pub(super) async fn read(shared: &Shared, request: Request) -> Result<Reply, ServerError> {
    match request {
        Request::Attachments { code } => {
            let code = known(shared, &code)?;
            let attachments = blocking(shared, move |store| store.attachments(code)).await?;
            Ok(Reply::Attachments(AttachmentList { code, attachments }))
        }
        Request::Attachment { code, id, offset } => {
            let code = known(shared, &code)?;
            let part = blocking(shared, move |store| {
                store.attachment_part(code, id, offset, MAX_PART_BYTES)
            })
            .await?;
            let Some((total, bytes)) = part else {
                return Err(BrokerError::InvalidInput(format!(
                    "case {code} has no attachment {id}; `sosq attachments {code}` lists them"
                ))
                .into());
            };
            if offset > total {
                return Err(BrokerError::InvalidInput(format!(
                    "attachment {id} of case {code} has {total} bytes; offset {offset} is past its end"
                ))
                .into());
            }
            Ok(Reply::AttachmentPart(AttachmentPart {
                code,
                id,
                offset,
                total,
                bytes,
            }))
        }
        _ => Err(BrokerError::InvalidInput("not a read of attachments".into()).into()),
    }
}

/// The code of a case that exists (open in the core, or stored), as staff may read any.
fn known(shared: &Shared, typed: &str) -> Result<SessionCode, ServerError> {
    let code: SessionCode = typed.parse().map_err(BrokerError::from)?;
    if shared.broker().case(code).is_some() || shared.store.get(code)?.is_some() {
        Ok(code)
    } else {
        Err(BrokerError::UnknownCode(code).into())
    }
}

/// Runs a store read off the connection threads: a part is up to 32 KiB read from disk.
async fn blocking<T: Send + 'static>(
    shared: &Shared,
    read: impl FnOnce(&dyn crate::store::CaseStore) -> Result<T, crate::store::StoreError>
        + Send
        + 'static,
) -> Result<T, ServerError> {
    let store = shared.store.clone();
    Ok(tokio::task::spawn_blocking(move || read(store.as_ref()))
        .await
        .map_err(|e| crate::store::StoreError::Backend(e.to_string()))??)
}
