//! The fixtures diff's tests import from here; they live in [`crate::testkit`].

pub(crate) use crate::testkit::*;
