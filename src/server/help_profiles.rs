//! What the customers' `/help/<name>` page asks of the daemon: the named support profile
//! it renders (team, the priorities on offer, welcome text, company) and its logo. Both
//! are reads of the users store's profiles (`crate::store::users`), which admins keep with
//! `sosqd profile save` and the console's Profiles page.

use sosq::protocol::Priority;

use super::Shared;
use crate::store::users::Profile;

/// What the customer's page says to an unreadable store: the details go to the log only,
/// since anyone may open the page.
const UNREADABLE: &str = "support requests cannot be taken just now; please try again in a minute";

/// What /help/<name> shows and asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpProfile {
    /// The profile's name (the last part of `/help/<name>`).
    pub name: String,
    /// The team whose queue the customer's request lands in.
    pub team: String,
    /// The priorities the customer may choose from, most urgent first; empty: the
    /// customer does not choose, and the request is `normal`.
    pub priorities: Vec<Priority>,
    /// Shown to the customer (plain text; may hold line breaks).
    pub welcome: Option<String>,
    /// The company the page speaks for.
    pub company: Option<String>,
    /// Whether `/help/<name>/logo` has an image ([`Shared::help_profile_logo`]).
    pub has_logo: bool,
}

impl From<Profile> for HelpProfile {
    fn from(profile: Profile) -> HelpProfile {
        HelpProfile {
            has_logo: profile.logo.is_some(),
            name: profile.name,
            team: profile.team,
            priorities: profile.priorities,
            welcome: profile.welcome,
            company: profile.company,
        }
    }
}

impl Shared {
    /// The support profile named `name`, if there is one. Answers from the users store's
    /// copy in memory (a cluster: refreshed four times a second), so it waits on no
    /// database. Errors: the store cannot be read (words to show a customer; the cause is
    /// logged).
    pub(crate) fn help_profile(&self, name: &str) -> Result<Option<HelpProfile>, String> {
        self.users
            .profile(name)
            .map(|found| found.map(HelpProfile::from))
            .map_err(|e| {
                tracing::error!(error = %e, profile = name, "cannot read the support profiles");
                UNREADABLE.to_string()
            })
    }

    /// The logo of the support profile named `name`: its content type (`image/png` or
    /// `image/jpeg`, checked by the image's own bytes when it was saved; never SVG) and
    /// the image; `None` if there is no such profile or it has no logo. Errors: the store
    /// cannot be read (words to show; the cause is logged).
    pub(crate) fn help_profile_logo(
        &self,
        name: &str,
    ) -> Result<Option<(String, Vec<u8>)>, String> {
        self.users
            .profile_logo(name)
            .map(|found| found.map(|logo| (logo.kind.content_type().to_string(), logo.bytes)))
            .map_err(|e| {
                tracing::error!(error = %e, profile = name, "cannot read a support profile's logo");
                UNREADABLE.to_string()
            })
    }
}
