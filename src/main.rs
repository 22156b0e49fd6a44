//! The `parallax` command line: run | check | probe | demo.

fn main() {
    std::process::exit(2);
}
