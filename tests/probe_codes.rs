//! Every error code of DESIGN §5 that one host can produce, each through a real server.

mod support;
