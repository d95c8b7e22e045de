//! Rebuilds the binary when a migration is added: `sqlx::migrate!` embeds the directory,
//! and cargo does not watch it on its own.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
