//! The words `sosq --help` opens with: what sosq does and its commands by role, and the
//! heading the global options sit under in every command's help.

/// The heading every command's help lists the global options under, apart from its own.
pub const GLOBAL: &str = "Global options (every command takes these)";

/// What `sosq -h` opens with.
pub const ABOUT: &str = "sosq: get remote support through a sosqd broker, or give it. Customers ask for help (sosq request), experts take the next case (sosq pull), admins keep the case list (sosq cases).";

/// What `sosq --help` opens with: what it does, and the main commands by role.
pub const LONG_ABOUT: &str = "\
sosq: get remote support through a sosqd broker, or give it.

A customer asks for help and gets a session code; an expert takes the case and the two
talk through the broker (stdin to the other side, the other side to stdout), and may
forward one TCP service (VNC, SSH...) the customer shares.

  Customers (no token):
    sosq request --name NAME          ask for help: prints your code, waits for an expert
    sosq join CODE --name NAME        join the case whose code an expert read to you
                                      (or come back to yours with --secret SECRET)
    sosq status CODE --secret SECRET  where your case stands
    sosq message CODE TEXT --secret SECRET    add words while you wait (\"it also beeps\")
    sosq attach CODE FILE --secret SECRET     attach a screenshot, a PDF or a text file
    sosq close CODE --secret SECRET   close your case
  Experts (--token TOKEN):
    sosq queue [--watch]              the waiting cases of your teams
    sosq pull [--wait]                take the next one and run the session
    sosq connect CODE                 connect to a case by its code
    sosq create --customer NAME       make a case and read its code to the customer
    sosq escalate CODE, assign CODE   change a case's priority; route it to an expert or team
    sosq transfer CODE                hand your session's case to another expert or team
    sosq status CODE, history CODE    a case and who did what (open, closed or expired)
    sosq note CODE TEXT               a note in the case's history, for staff only
    sosq attachments CODE [--get ID]  the customer's files: list, or download one
    sosq close CODE                   close a case
  Admins (--token TOKEN):
    sosq cases                        every stored case, a page at a time; filter flags:
                                      --state, --team, --priority, --text, --older-than,
                                      --created-after/-before, --closed-after/-before
    sosq delete CODE...               delete cases by code, or in bulk by the same flags
    sosq queue, status, history, note, attachments, escalate, assign: as experts, over
                                      every team

Every command needs the broker's address and certificate: --server ADDR and
--fingerprint FINGERPRINT (or the environment, or a support profile with --profile FILE).";
