//! Customers' messages and attachments: `sosq message` and `sosq attach` for the case's
//! customer, `sosq attachments` for staff to list and download.
//!
//! A file travels in parts of at most [`MAX_PART_BYTES`] both ways (a frame holds 64 KiB).
//! A download is written to a temporary file beside the target and renamed only once every
//! byte arrived and the count matches the attachment's size, so a cut-off download never
//! looks complete; an existing file is never overwritten without `--force`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use sosq::protocol::{thousands, AttachmentInfo, Reply, Request, MAX_PART_BYTES};
use sosq::{Client, ClientError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::output::Output;
use super::{shapes, unexpected};

/// `sosq message CODE TEXT`.
#[derive(Args)]
pub struct MessageArgs {
    /// The session code of your case.
    pub code: String,
    /// What to add ("it also beeps"; at most 2,000 characters).
    pub text: String,
    /// The resume secret of your case.
    #[arg(
        long,
        env = "SOSQ_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
    /// Your support profile (server and certificate).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

/// `sosq attach CODE FILE`.
#[derive(Args)]
pub struct AttachArgs {
    /// The session code of your case.
    pub code: String,
    /// The file: a PNG, JPEG, GIF or WebP image, a PDF, or plain UTF-8 text (4 MiB at most
    /// unless the daemon says otherwise).
    pub file: PathBuf,
    /// The resume secret of your case.
    #[arg(
        long,
        env = "SOSQ_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
    /// Your support profile (server and certificate).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
}

/// `sosq attachments CODE [--get ID [--out FILE] [--force]]`.
#[derive(Args)]
pub struct AttachmentsArgs {
    /// The session code.
    pub code: String,
    /// Download this attachment (its number in the list) instead of listing.
    #[arg(long, value_name = "ID")]
    pub get: Option<u32>,
    /// Where to write the download [default: the attachment's name, here].
    #[arg(long, value_name = "FILE", requires = "get")]
    pub out: Option<PathBuf>,
    /// Overwrite the file if it exists.
    #[arg(long, requires = "get")]
    pub force: bool,
}

/// Adds a message to the customer's case.
pub async fn message(
    client: &mut Client,
    out: &Output,
    args: MessageArgs,
) -> Result<(), ClientError> {
    let reply = client
        .request(Request::AddMessage {
            code: args.code,
            resume_secret: args.secret,
            text: args.text,
        })
        .await?;
    let Reply::Case(case) = reply else {
        return Err(unexpected());
    };
    out.print(
        format!("message added to case {}", case.code),
        shapes::case(&case),
    );
    Ok(())
}

/// Uploads a file to the customer's case: start, parts, finish.
pub async fn attach(
    client: &mut Client,
    out: &Output,
    args: AttachArgs,
) -> Result<(), ClientError> {
    let local =
        |e: std::io::Error| ClientError::Local(format!("cannot read {}: {e}", args.file.display()));
    let mut file = tokio::fs::File::open(&args.file).await.map_err(local)?;
    let size = file.metadata().await.map_err(local)?.len();
    let name = args
        .file
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reply = client
        .request(Request::AttachStart {
            code: args.code.clone(),
            resume_secret: args.secret.clone(),
            name,
            size,
        })
        .await?;
    let Reply::UploadStarted { upload } = reply else {
        return Err(unexpected());
    };
    let mut sent = 0u64;
    let mut part = vec![0u8; MAX_PART_BYTES];
    while sent < size {
        let filled = fill(&mut file, &mut part).await.map_err(local)?;
        if filled == 0 {
            return Err(ClientError::Local(format!(
                "{} shrank while it was sent ({sent} of {size} bytes); attach it again",
                args.file.display()
            )));
        }
        let reply = client
            .request(Request::AttachPart {
                upload,
                bytes: part[..filled].to_vec(),
            })
            .await?;
        let Reply::UploadReceived { received, .. } = reply else {
            return Err(unexpected());
        };
        sent = received;
    }
    let reply = client.request(Request::AttachFinish { upload }).await?;
    let Reply::AttachmentAdded(info) = reply else {
        return Err(unexpected());
    };
    let code: sosq::SessionCode = args
        .code
        .parse()
        .map_err(|e: sosq::code::BadCode| ClientError::Options(e.to_string()))?;
    let mut value = json!(info);
    if let Some(fields) = value.as_object_mut() {
        fields.insert("code".into(), json!(code));
    }
    out.print(
        format!(
            "attached {} to case {code} ({} bytes, {})",
            info.name,
            thousands(info.size),
            info.content_type
        ),
        value,
    );
    Ok(())
}

/// Reads until `buf` is full or the file ends; how many bytes it holds.
async fn fill(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]).await? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Lists a case's attachments, or downloads one.
pub async fn attachments(
    client: &mut Client,
    out: &Output,
    args: AttachmentsArgs,
) -> Result<(), ClientError> {
    let reply = client
        .request(Request::Attachments {
            code: args.code.clone(),
        })
        .await?;
    let Reply::Attachments(list) = reply else {
        return Err(unexpected());
    };
    let Some(id) = args.get else {
        out.print(table(&list.attachments), json!(list));
        return Ok(());
    };
    let Some(info) = list.attachments.iter().find(|a| a.id == id) else {
        return Err(ClientError::Options(format!(
            "case {} has no attachment {id}; `sosq attachments {}` lists them",
            list.code, list.code
        )));
    };
    let target = args.out.unwrap_or_else(|| local_name(info));
    let written = download(client, &args.code, info, &target, args.force).await?;
    out.print(
        format!("wrote {} ({} bytes)", target.display(), thousands(written)),
        json!({
            "code": list.code,
            "id": id,
            "name": info.name,
            "size": written,
            "file": target.display().to_string(),
        }),
    );
    Ok(())
}

/// The attachments as a table.
fn table(attachments: &[AttachmentInfo]) -> String {
    if attachments.is_empty() {
        return "no attachments".into();
    }
    let mut table = format!(
        "{:<4} {:<12} {:<26} {:<21} {}\n",
        "ID", "SIZE", "TYPE", "ATTACHED", "NAME"
    );
    for a in attachments {
        table.push_str(&format!(
            "{:<4} {:<12} {:<26} {:<21} {}\n",
            a.id,
            thousands(a.size),
            a.content_type,
            super::output::clock_time(a.attached_at),
            a.name
        ));
    }
    table
}

/// Fetches every part of `info` into a temporary file beside `target`, checks the count,
/// then renames it into place. Returns the bytes written.
async fn download(
    client: &mut Client,
    code: &str,
    info: &AttachmentInfo,
    target: &Path,
    force: bool,
) -> Result<u64, ClientError> {
    if !force && tokio::fs::try_exists(target).await.unwrap_or(true) {
        return Err(ClientError::Options(format!(
            "{} exists; pass --force to overwrite it, or --out FILE",
            target.display()
        )));
    }
    let partial = partial_path(target);
    let local =
        |e: std::io::Error| ClientError::Local(format!("cannot write {}: {e}", partial.display()));
    let mut file = tokio::fs::File::create(&partial).await.map_err(local)?;
    let fetched = fetch_into(client, code, info.id, &mut file).await;
    let finished = match fetched {
        Ok(written) => file.sync_all().await.map_err(local).map(|()| written),
        Err(e) => Err(e),
    };
    drop(file);
    match finished {
        Ok(written) => {
            tokio::fs::rename(&partial, target).await.map_err(|e| {
                ClientError::Local(format!(
                    "cannot move the download to {}: {e}",
                    target.display()
                ))
            })?;
            Ok(written)
        }
        Err(e) => {
            // Nothing half-written is left to be taken for the file.
            let _ = tokio::fs::remove_file(&partial).await;
            Err(e)
        }
    }
}

/// Reads attachment `id` part by part into `file` until its whole size is there.
async fn fetch_into(
    client: &mut Client,
    code: &str,
    id: u32,
    file: &mut tokio::fs::File,
) -> Result<u64, ClientError> {
    let mut offset = 0u64;
    loop {
        let reply = client
            .request(Request::Attachment {
                code: code.to_string(),
                id,
                offset,
            })
            .await?;
        let Reply::AttachmentPart(part) = reply else {
            return Err(unexpected());
        };
        if part.offset != offset || part.id != id {
            return Err(unexpected());
        }
        if part.bytes.is_empty() {
            if offset == part.total {
                return Ok(offset);
            }
            return Err(ClientError::Unexpected(format!(
                "the download stopped at {offset} of {} bytes",
                part.total
            )));
        }
        file.write_all(&part.bytes)
            .await
            .map_err(|e| ClientError::Local(format!("cannot write the download: {e}")))?;
        offset += part.bytes.len() as u64;
        if offset == part.total {
            return Ok(offset);
        }
        if offset > part.total {
            return Err(ClientError::Unexpected(
                "sosqd sent more bytes than the attachment has".into(),
            ));
        }
    }
}

/// The file a download is written to without `--out`: the attachment's name, in this
/// folder. sosqd cleans names already; this keeps only the last component once more, so
/// no name from the network ever picks a folder.
fn local_name(info: &AttachmentInfo) -> PathBuf {
    Path::new(&info.name)
        .file_name()
        .filter(|name| !name.to_string_lossy().starts_with('.'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("attachment-{}", info.id)))
}

/// Where a download is written until it is complete: `.NAME.partial` beside the target.
fn partial_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    target.with_file_name(format!(".{name}.partial"))
}
