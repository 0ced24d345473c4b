//! `sosqd profile`: support profiles. Without a subcommand it writes a support profile
//! file (`support.sosq`, what `sosq request --profile FILE` reads), and with
//! `--desktop-entry` the desktop SOS button beside it; `save`, `list` and
//! `remove` keep the named profiles of the customers' `/help/NAME` pages in the users
//! store (whether or not a daemon runs, as `sosqd user` does); `desktop-entry` writes the
//! desktop SOS button that opens such a page.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sosq::protocol::Priority;
use sosqd::config::Config;
use sosqd::store::users::{
    LogoChange, Profile, ProfileDraft, UserDirectory, UserError, MAX_LOGO_BYTES,
};
use sosqd::transport::Identity;

use super::{directory, store_config, StoreArgs, Writes};

/// `sosqd profile [--out FILE ...]` or `sosqd profile COMMAND`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct ProfileArgs {
    #[command(subcommand)]
    command: Option<ProfileCommand>,
    /// Where to write the support profile file.
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    /// The broker's address as customers reach it, host:port [default: the listen
    /// address, if it is not a wildcard].
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// The team whose queue the customers land in.
    #[arg(long)]
    group: Option<String>,
    /// Shown to customers while they wait.
    #[arg(long)]
    welcome: Option<String>,
    /// Also write the desktop SOS button beside the file, for customers who install
    /// nothing: it opens the named profile PAGE's /help/PAGE, or the plain /help page
    /// without a value.
    #[arg(long, value_name = "PAGE", num_args = 0..=1, default_missing_value = "")]
    desktop_entry: Option<String>,
    #[command(flatten)]
    data: StoreArgs,
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Keep a named profile for the customers' page /help/NAME (replacing one of that
    /// name: every field is as given, except the logo, kept unless --logo or --no-logo).
    Save {
        /// Its name: lowercase letters, digits and '-', at most 40; the end of /help/NAME.
        name: String,
        /// The team whose queue its customers' requests land in [default: general].
        #[arg(long)]
        team: Option<String>,
        /// The priorities a customer may choose from, e.g. normal,high [default: none,
        /// the customer does not choose and the request is normal].
        #[arg(long, value_name = "LIST", value_delimiter = ',')]
        priorities: Vec<Priority>,
        /// Shown to the customer on its page (at most 2000 characters).
        #[arg(long)]
        welcome: Option<String>,
        /// The company the page speaks for (at most 100 characters).
        #[arg(long)]
        company: Option<String>,
        /// A PNG or JPEG logo of at most 256 KiB (SVG is refused: it can carry script).
        #[arg(long, value_name = "FILE", conflicts_with = "no_logo")]
        logo: Option<PathBuf>,
        /// Take the logo away.
        #[arg(long)]
        no_logo: bool,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// List the named profiles and their pages.
    List(StoreArgs),
    /// Remove a named profile (and its logo); its page is gone at once.
    Remove {
        /// The profile's name.
        name: String,
        #[command(flatten)]
        data: StoreArgs,
    },
    /// Write the desktop SOS button that opens /help/NAME: NAME-support.desktop (Linux
    /// desktops) and NAME-support.url (Windows, macOS) into DIR.
    DesktopEntry {
        /// The profile's name.
        name: String,
        /// The directory to write both files into (made if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The broker's address as customers reach it, host:port; the page is at its host,
        /// on the console's port [default: the listen address, if it is not a wildcard].
        #[arg(long, value_name = "ADDR")]
        server: Option<String>,
        #[command(flatten)]
        data: StoreArgs,
    },
}

/// Runs `sosqd profile ...`.
pub(crate) fn run(args: ProfileArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let out = args
                .out
                .ok_or_else(|| anyhow::anyhow!("give --out FILE, or a command (save, list...)"))?;
            // Everything is checked before anything is written: a refused button leaves no
            // file behind.
            let button = match &args.desktop_entry {
                None => None,
                Some(page) => {
                    let page = Some(page.as_str()).filter(|p| !p.is_empty());
                    Some(SosButton::plan(page, args.server.clone(), &args.data)?)
                }
            };
            // The file beside a named page's button sends its customers where the page does
            // (its team, its welcome), unless the flags say otherwise.
            let (group, welcome) = match button.as_ref().and_then(|b| b.profile.as_ref()) {
                Some(profile) => (
                    args.group.or_else(|| Some(profile.team.clone())),
                    args.welcome.or_else(|| profile.welcome.clone()),
                ),
                None => (args.group, args.welcome),
            };
            write_file(&out, args.server, group, welcome, &args.data)?;
            match button {
                None => Ok(()),
                Some(button) => {
                    let beside = match out.parent() {
                        Some(dir) if !dir.as_os_str().is_empty() => dir,
                        _ => Path::new("."),
                    };
                    button.write(beside)
                }
            }
        }
        Some(ProfileCommand::Save {
            name,
            team,
            priorities,
            welcome,
            company,
            logo,
            no_logo,
            data,
        }) => {
            let logo = match (logo, no_logo) {
                (Some(file), _) => LogoChange::Set(read_logo(&file)?),
                (None, true) => LogoChange::Remove,
                (None, false) => LogoChange::Keep,
            };
            let directory = directory(&data, Writes::Yes)?;
            let saved = directory.save_profile(ProfileDraft {
                name,
                team: team.unwrap_or_default(),
                priorities,
                welcome: welcome.unwrap_or_default(),
                company: company.unwrap_or_default(),
                logo,
            })?;
            eprintln!(
                "saved support profile {} in {} ({}); customers open https://HOST:PORT/help/{}, \
                 and `sosqd profile desktop-entry {} --out DIR` writes their desktop button",
                saved.name,
                directory.location(),
                summary(&saved),
                saved.name,
                saved.name
            );
            Ok(())
        }
        Some(ProfileCommand::List(data)) => {
            let directory = directory(&data, Writes::No)?;
            let profiles = directory.profiles()?;
            if profiles.is_empty() {
                eprintln!(
                    "no support profiles yet in {}; add one with `sosqd profile save NAME`",
                    directory.location()
                );
            }
            for profile in profiles {
                println!(
                    "{:<24} /help/{:<24} {}",
                    profile.name,
                    profile.name,
                    summary(&profile)
                );
            }
            Ok(())
        }
        Some(ProfileCommand::Remove { name, data }) => {
            let directory = directory(&data, Writes::Yes)?;
            let removed = directory.remove_profile(&name)?;
            eprintln!(
                "removed support profile {} from {}; /help/{} no longer exists",
                removed.name,
                directory.location(),
                removed.name
            );
            Ok(())
        }
        Some(ProfileCommand::DesktopEntry {
            name,
            out,
            server,
            data,
        }) => SosButton::plan(Some(&name), server, &data)?.write(&out),
    }
}

/// One line about a profile: team, priorities offered, company, logo.
fn summary(profile: &Profile) -> String {
    let priorities = if profile.priorities.is_empty() {
        "priority not asked".to_string()
    } else {
        let words: Vec<&str> = profile.priorities.iter().map(|p| p.as_str()).collect();
        format!("priorities {}", words.join(","))
    };
    let mut line = format!("team {}, {priorities}", profile.team);
    if let Some(company) = &profile.company {
        line.push_str(&format!(", company {company:?}"));
    }
    if let Some(logo) = &profile.logo {
        line.push_str(&format!(
            ", {} logo of {} KiB",
            logo.kind.as_str(),
            logo.bytes.div_ceil(1024)
        ));
    }
    line
}

/// The logo file's bytes, refused early when it is larger than any logo kept (the store
/// checks what the image is).
fn read_logo(file: &Path) -> anyhow::Result<Vec<u8>> {
    let opened = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("cannot read the logo {}: {e}", file.display()))?;
    let mut bytes = Vec::new();
    opened
        .take(MAX_LOGO_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the logo {}: {e}", file.display()))?;
    if bytes.len() > MAX_LOGO_BYTES {
        anyhow::bail!(
            "the logo {} is larger than {} KiB, the most kept",
            file.display(),
            MAX_LOGO_BYTES / 1024
        );
    }
    Ok(bytes)
}

/// The broker's address as customers reach it: `server` if given, else the listen
/// address unless it is a wildcard.
fn customer_server(config: &Config, server: Option<String>) -> anyhow::Result<String> {
    match server {
        Some(server) => Ok(server),
        None if !config.listen.ip().is_unspecified() => Ok(config.listen.to_string()),
        None => anyhow::bail!(
            "the daemon listens on {}, which customers cannot dial; give --server HOST:PORT",
            config.listen
        ),
    }
}

/// `sosqd profile --out FILE`: the support profile file.
fn write_file(
    out: &Path,
    server: Option<String>,
    group: Option<String>,
    welcome: Option<String>,
    data: &StoreArgs,
) -> anyhow::Result<()> {
    let config = store_config(data)?;
    let users = UserDirectory::from_config(&config)?;
    if let Some(group) = &group {
        if !users.group_exists(group)? {
            anyhow::bail!("no group named {group:?}; add it with `sosqd group add {group}`");
        }
    }
    let profile = sosq::profile::SupportProfile {
        server: customer_server(&config, server)?,
        fingerprint: Identity::from_config(&config)?.fingerprint(),
        group,
        welcome,
    };
    profile.save(out)?;
    eprintln!(
        "wrote {}; customers run: sosq request --profile {}",
        out.display(),
        out.display()
    );
    Ok(())
}

/// The desktop SOS button to write: `sosqd profile desktop-entry NAME --out DIR`, or
/// `sosqd profile --out FILE --desktop-entry [NAME]` (without NAME: the plain /help page).
struct SosButton {
    /// The named profile whose page it opens; `None`: the plain /help page.
    profile: Option<Profile>,
    /// The files' names: `<stem>-support.desktop` and `.url`.
    stem: String,
    /// The button's name on the desktop.
    title: String,
    /// The page it opens.
    url: String,
}

impl SosButton {
    /// Looks up the profile `page` names (if any) and where its page is. Errors: no such
    /// profile, the web console off, or no address customers can reach.
    fn plan(page: Option<&str>, server: Option<String>, data: &StoreArgs) -> anyhow::Result<Self> {
        let config = store_config(data)?;
        let profile = match page {
            Some(name) => Some(
                directory(data, Writes::No)?
                    .profile(name)?
                    .ok_or_else(|| UserError::NoSuchProfile(name.to_string()))?,
            ),
            None => None,
        };
        let (stem, title) = match &profile {
            Some(profile) => (
                profile.name.clone(),
                format!(
                    "{} support",
                    profile.company.as_deref().unwrap_or(&profile.name)
                ),
            ),
            None => ("sos".to_string(), "Remote support".to_string()),
        };
        let path = format!("/help{}", page.map(|p| format!("/{p}")).unwrap_or_default());
        // The console shares the QUIC port's number unless `web_listen` gives it its own.
        let web_port = match config.web_listen.as_deref().map(str::trim) {
            None => None,
            Some("") => anyhow::bail!(
                "the web console is off (web_listen = \"\"), so there is no {path} page to open"
            ),
            Some(_) => config.web_address(config.listen)?.map(|addr| addr.port()),
        };
        let server = customer_server(&config, server)?;
        let url = sosqd::sos_shortcut::help_url(&server, web_port, page)?;
        Ok(SosButton {
            profile,
            stem,
            title,
            url,
        })
    }

    /// Writes both files into `out` and says so.
    fn write(&self, out: &Path) -> anyhow::Result<()> {
        for path in sosqd::sos_shortcut::write(out, &self.stem, &self.title, &self.url)? {
            println!("{}", path.display());
        }
        eprintln!(
            "wrote the SOS button \"{}\", which opens {}",
            self.title, self.url
        );
        Ok(())
    }
}
