//! Spark's file-sink commit log (`_spark_metadata/` under the archive directory): which
//! files a Structured Streaming query committed.
//!
//! Each micro-batch `N` writes a log file `N` (a version line `v1`, then one JSON entry per
//! file: `{"path": "hdfs://…/part-….parquet", "action": "add", …}`); every few batches the
//! log is compacted into `N.compact`, which holds every entry up to `N`, and older batch
//! files may then be deleted. The committed files are the entries of the newest compact
//! file and of every batch after it, `add`s minus `delete`s. A file on disk that is not
//! among them belongs to a micro-batch that failed; Spark's readers ignore it and so does
//! fletch. Log files never change once written, so each is read once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use object_store::path::Path as StorePath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};

/// The directory Spark's file sink keeps its log in.
pub const LOG_DIR: &str = "_spark_metadata";

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    /// The file's URL path, decoded (`/data/logs/raw/year=2026/…/part-….parquet`).
    path: String,
    add: bool,
}

/// The files the log says are committed.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Paths relative to the archive directory.
    relative: HashSet<String>,
    /// File names of entries logged under another directory (the archive was moved or is
    /// reached under another name): matched by name, which Spark makes unique per file.
    names: HashSet<String>,
    /// The newest batch in the log.
    pub batch: u64,
}

impl Committed {
    pub fn contains(&self, rel: &str) -> bool {
        self.relative.contains(rel) || self.names.contains(rel.rsplit('/').next().unwrap_or(rel))
    }
}

/// Parsed log files by location, so each is fetched once.
#[derive(Default)]
pub struct CommitLog {
    parsed: HashMap<StorePath, (ObjectMeta, Arc<Vec<Entry>>)>,
}

impl CommitLog {
    /// The committed files, from the log files among `listed` (every file under the
    /// archive directory); `None` when there is no log.
    pub async fn committed(
        &mut self,
        store: &Arc<dyn ObjectStore>,
        dir: &StorePath,
        listed: &[ObjectMeta],
    ) -> Result<Option<Committed>, String> {
        let mut batches: Vec<(u64, bool, &ObjectMeta)> = listed
            .iter()
            .filter_map(|m| match super::layout::relative(dir, &m.location)?.as_slice() {
                [LOG_DIR, name] => batch_id(name).map(|(n, c)| (n, c, m)),
                _ => None,
            })
            .collect();
        if batches.is_empty() {
            self.parsed.clear();
            return Ok(None);
        }
        batches.sort_by_key(|(n, compact, _)| (*n, *compact));
        let start = batches.iter().rposition(|(_, compact, _)| *compact).unwrap_or(0);
        let needed = &batches[start..];
        let mut committed = Committed { batch: batches.last().map_or(0, |b| b.0), ..Default::default() };
        let mut live: HashMap<String, bool> = HashMap::new();
        for (_, _, meta) in needed {
            for e in self.entries(store, meta).await?.iter() {
                live.insert(e.path.clone(), e.add);
            }
        }
        let prefix = format!("/{}/", dir.as_ref());
        for (path, _) in live.into_iter().filter(|(_, add)| *add) {
            match path.strip_prefix(&prefix) {
                Some(rel) => committed.relative.insert(rel.to_string()),
                None => committed.names.insert(path.rsplit('/').next().unwrap_or(&path).to_string()),
            };
        }
        let keep: HashSet<&StorePath> = needed.iter().map(|(_, _, m)| &m.location).collect();
        self.parsed.retain(|k, _| keep.contains(k));
        Ok(Some(committed))
    }

    async fn entries(&mut self, store: &Arc<dyn ObjectStore>, meta: &ObjectMeta) -> Result<Arc<Vec<Entry>>, String> {
        if let Some((m, e)) = self.parsed.get(&meta.location).filter(|(m, _)| m.size == meta.size) {
            debug_assert_eq!(m.location, meta.location);
            return Ok(e.clone());
        }
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(|e| format!("reading {}: {e}", meta.location))?
            .bytes()
            .await
            .map_err(|e| format!("reading {}: {e}", meta.location))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| format!("{} is not text", meta.location))?;
        let entries = Arc::new(parse(text).map_err(|e| format!("{}: {e}", meta.location))?);
        self.parsed.insert(meta.location.clone(), (meta.clone(), entries.clone()));
        Ok(entries)
    }
}

/// `7` → batch 7; `9.compact` → batch 9, compacted; anything else (`.7.crc`, temp files)
/// is not part of the log.
fn batch_id(name: &str) -> Option<(u64, bool)> {
    match name.strip_suffix(".compact") {
        Some(n) => n.parse().ok().map(|n| (n, true)),
        None => name.parse().ok().map(|n| (n, false)),
    }
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut lines = text.lines();
    match lines.next() {
        Some(v) if v.starts_with('v') => {}
        other => return Err(format!("expected a version line, found {other:?}")),
    }
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(|e| format!("bad entry {l:?}: {e}"))?;
            let raw = v["path"].as_str().ok_or_else(|| format!("entry without a path: {l}"))?;
            if v["isDir"].as_bool() == Some(true) {
                return Ok(None);
            }
            let path = match url::Url::parse(raw) {
                Ok(u) => super::layout::percent_decode(u.path()),
                Err(_) => raw.to_string(),
            };
            Ok(Some(Entry { path, add: v["action"].as_str() != Some("delete") }))
        })
        .filter_map(Result::transpose)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_from_spark_log_lines() {
        let text = "v1\n{\"path\":\"hdfs://namenode:9000/data/logs/raw/year=2026/hour=4/part-00000-a.c000.snappy.parquet\",\"size\":10,\"isDir\":false,\"modificationTime\":1,\"blockReplication\":1,\"blockSize\":1,\"action\":\"add\"}\n{\"path\":\"file:/tmp/a%20b/part-1.parquet\",\"size\":1,\"isDir\":false,\"action\":\"delete\"}\n";
        let e = parse(text).unwrap();
        assert_eq!(e[0].path, "/data/logs/raw/year=2026/hour=4/part-00000-a.c000.snappy.parquet");
        assert!(e[0].add);
        assert_eq!(e[1].path, "/tmp/a b/part-1.parquet");
        assert!(!e[1].add);
        assert!(parse("{}").is_err());
    }

    #[test]
    fn log_file_names() {
        assert_eq!(batch_id("12"), Some((12, false)));
        assert_eq!(batch_id("9.compact"), Some((9, true)));
        assert_eq!(batch_id(".9.compact.crc"), None);
        assert_eq!(batch_id("9.compact.tmp"), None);
    }

    #[test]
    fn entries_logged_under_another_directory_match_by_name() {
        let mut c = Committed::default();
        c.relative.insert("year=2026/part-1.parquet".into());
        c.names.insert("part-2.parquet".into());
        assert!(c.contains("year=2026/part-1.parquet"));
        assert!(c.contains("year=2025/part-2.parquet"));
        assert!(!c.contains("year=2026/part-3.parquet"));
    }
}
