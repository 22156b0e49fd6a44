//! `parallax run`: the scheduler, verdicts, the diff and attribution running continuously,
//! reloads (SIGHUP and config directory changes), exports, the admin server, clean shutdown.
