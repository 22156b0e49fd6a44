//! The scheduler: every view on its own interval, its first run spread over the interval by a
//! stable hash of its name, jittered, its timeout enforced, a global cap on probes in flight; a
//! view whose previous probe still runs skips the tick (counted). Lateness is measured for
//! every probe.
