//! `nimbus migrate-store`: copies a stopped deployment's records and blobs from one
//! pair of backends to another (the embedded defaults to PostgreSQL and S3, or back),
//! then checks the copy: every blob is present under its digest with its length, every
//! table holds the same keys and values.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nimbus_storage::{BlobInfo, BlobStore, Expect, MetadataStore, WriteBatch};

use crate::backends::{self, BLOB_STORES, BlobBackend};

/// Records read and written per batch.
const PAGE: usize = 500;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The data dir of the source (its SQLite file and blob files, when it uses them).
    #[arg(long, default_value = "./nimbus-data")]
    pub from_data_dir: PathBuf,
    /// The source's records: `sqlite` or a postgres:// URL.
    #[arg(long, default_value = "sqlite")]
    pub from_metadata: String,
    /// The source's blobs: `file` or an s3:// URL.
    #[arg(long, default_value = "file")]
    pub from_blobs: String,
    /// The data dir of the target (default: the source's).
    #[arg(long)]
    pub to_data_dir: Option<PathBuf>,
    /// The target's records: `sqlite` or a postgres:// URL; it must hold none yet.
    #[arg(long)]
    pub to_metadata: String,
    /// The target's blobs: `file` or an s3:// URL (NIMBUS_BLOBS_ACCESS_KEY_ID and
    /// NIMBUS_BLOBS_SECRET_ACCESS_KEY, or the AWS chain, for either side).
    #[arg(long)]
    pub to_blobs: String,
}

pub fn run(args: MigrateArgs) -> ExitCode {
    match migrate(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("nimbus migrate-store: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Holds a data dir's server lock, so no server uses it while it is copied.
fn lock(dir: &Path) -> Result<File, String> {
    fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let path = dir.join("nimbus.lock");
    let file = File::create(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    file.try_lock()
        .map_err(|_| format!("a nimbus server is using {}: stop it first", dir.display()))?;
    Ok(file)
}

fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let from_dir = &args.from_data_dir;
    let to_dir = args.to_data_dir.as_ref().unwrap_or(from_dir);
    let _locks = if to_dir == from_dir {
        vec![lock(from_dir)?]
    } else {
        vec![lock(from_dir)?, lock(to_dir)?]
    };
    if (&args.from_metadata, &args.from_blobs, from_dir)
        == (&args.to_metadata, &args.to_blobs, to_dir)
    {
        return Err("the source and the target are the same".into());
    }
    let source = backends::metadata_store(&args.from_metadata, 4, from_dir).map_err(text)?;
    let target = backends::metadata_store(&args.to_metadata, 4, to_dir).map_err(text)?;
    if !target.tables().map_err(text)?.is_empty() {
        return Err("the target metadata store already holds records; give an empty one".into());
    }
    let (from_blobs, to_blobs) = (
        BlobBackend::parse(&args.from_blobs).map_err(text)?,
        BlobBackend::parse(&args.to_blobs).map_err(text)?,
    );
    // Blobs first: once a record is there, so are the bytes it names.
    for name in BLOB_STORES {
        let source = from_blobs.open(from_dir, name).map_err(text)?;
        let target = to_blobs.open(to_dir, name).map_err(text)?;
        let (count, bytes) = copy_blobs(&*source, &*target)?;
        println!("{name}: {count} blobs, {bytes} bytes, verified");
    }
    for table in source.tables().map_err(text)? {
        let count = copy_table(&*source, &*target, &table)?;
        verify_table(&*source, &*target, &table)?;
        println!("{table}: {count} records, verified");
    }
    // Not the URLs: they may hold a password.
    println!("migrated: start the server with the target's --metadata and --blobs");
    Ok(())
}

fn text(err: impl std::fmt::Display) -> String {
    err.to_string()
}

/// Copies every blob `source` holds that `target` lacks, each checked against its
/// digest as it is written; then checks `target` has every one at its length.
fn copy_blobs(source: &dyn BlobStore, target: &dyn BlobStore) -> Result<(u64, u64), String> {
    let mut listed: Vec<BlobInfo> = Vec::new();
    source
        .list(&mut |info| {
            listed.push(info);
            Ok(())
        })
        .map_err(text)?;
    let (mut count, mut bytes) = (0, 0);
    for info in &listed {
        let present = target.stat(&info.digest).map_err(text)?;
        if present.is_none_or(|present| present.len != info.len) {
            let Some(mut blob) = source.open(&info.digest).map_err(text)? else {
                return Err(format!("blob {} vanished from the source", info.digest));
            };
            let mut writer = target.writer().map_err(text)?;
            std::io::copy(&mut blob.reader, &mut writer)
                .map_err(|err| format!("copying blob {}: {err}", info.digest))?;
            writer.commit(Some(info.digest)).map_err(text)?;
        }
        match target.stat(&info.digest).map_err(text)? {
            Some(copied) if copied.len == info.len => {}
            _ => return Err(format!("blob {} is not in the target whole", info.digest)),
        }
        count += 1;
        bytes += info.len;
    }
    Ok((count, bytes))
}

fn copy_table(
    source: &dyn MetadataStore,
    target: &dyn MetadataStore,
    table: &str,
) -> Result<u64, String> {
    let (mut after, mut count) = (None::<String>, 0);
    loop {
        let page = source
            .scan(table, "", after.as_deref(), PAGE)
            .map_err(text)?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = Some(last.key.clone());
        count += page.len() as u64;
        let batch = page.into_iter().fold(WriteBatch::new(), |batch, record| {
            batch.put(table, &record.key, record.value, Expect::Absent)
        });
        target.commit(batch).map_err(text)?;
    }
}

/// Walks both stores' copies of `table` side by side: the same keys, the same values.
fn verify_table(
    source: &dyn MetadataStore,
    target: &dyn MetadataStore,
    table: &str,
) -> Result<(), String> {
    let mut after = None::<String>;
    loop {
        let theirs = source
            .scan(table, "", after.as_deref(), PAGE)
            .map_err(text)?;
        let ours = target
            .scan(table, "", after.as_deref(), PAGE)
            .map_err(text)?;
        let differs = theirs.len() != ours.len()
            || theirs
                .iter()
                .zip(&ours)
                .any(|(a, b)| a.key != b.key || a.value != b.value);
        if differs {
            return Err(format!(
                "table {table} differs after the copy near key {after:?}"
            ));
        }
        match theirs.last() {
            Some(last) => after = Some(last.key.clone()),
            None => return Ok(()),
        }
    }
}
