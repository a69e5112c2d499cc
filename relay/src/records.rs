//! The session records file: one JSON line per SMTP session, flushed as it is written so a crash
//! loses no finished session.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use records::SessionRecord;

pub struct RecordSink {
    file: Option<Mutex<std::fs::File>>,
}

impl RecordSink {
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            // Owner-only and never through a link, like the spool: it names every correspondent.
            Some(p) => Some(Mutex::new(crate::files::open_private_append(p)?)),
            None => None,
        };
        Ok(Self { file })
    }

    pub fn write(&self, record: &SessionRecord) {
        let Some(file) = &self.file else { return };
        let Ok(mut line) = serde_json::to_string(record) else { return };
        line.push('\n');
        // One write_all per line under the lock keeps lines whole when sessions end together.
        let mut f = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            tracing::error!("cannot write session record: {e}");
        }
    }
}
