//! Raw config -> `Plan`, collecting every error.

use std::path::Path;

use super::{ConfigErrors, Env, Plan};

pub(super) fn load_dir(dir: &Path, env: &dyn Env) -> Result<Plan, ConfigErrors> {
    let _ = (dir, env);
    todo!("config: load and compile")
}
