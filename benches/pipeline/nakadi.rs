//! The Nakadi-compatible server the live runs read from: this harness
//! started again in server mode, in a process of its own so that its memory
//! is not the harness's, serving a dataset's recordings.

use std::path::Path;
use std::process::Command;

/// The local Nakadi-compatible server, serving the dataset's recordings.
pub(crate) struct NakadiServer {
    child: std::process::Child,
    pub(crate) url: String,
}

impl NakadiServer {
    pub(crate) fn start(sql_dir: &Path, recordings: &Path) -> Result<NakadiServer, String> {
        use std::io::BufRead;
        // The server runs in a process of its own (this harness, started
        // again in server mode), so that its memory is not the harness's. It
        // takes a port of the system's choice and says which on stdout.
        let harness = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(harness)
            .arg(SERVE_NAKADI)
            .arg("127.0.0.1:0")
            .arg(sql_dir)
            .arg(recordings)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting the Nakadi-compatible server: {e}"))?;
        let mut announced = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = std::io::BufReader::new(stdout).read_line(&mut announced);
        }
        let Some(address) = announced.trim().strip_prefix(LISTENING) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the Nakadi-compatible server did not start (it said {announced:?})"
            ));
        };
        let url = format!("http://{address}");
        Ok(NakadiServer { child, url })
    }
}

impl Drop for NakadiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// First argument that makes the harness a Nakadi-compatible server:
/// `<listen address> <sql dir> <recordings dir>`.
pub(crate) const SERVE_NAKADI: &str = "--serve-nakadi";

/// What the server says on stdout before its address, once it listens.
const LISTENING: &str = "listening on ";

/// Serves the event types of `sql dir` with the recordings until killed.
pub(crate) fn serve_nakadi(args: &[String]) -> Result<(), String> {
    let [listen, sql_dir, recordings] = args else {
        return Err("expected: <listen address> <sql dir> <recordings dir>".into());
    };
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let bus = nakadi_testkit::Bus::new(None, 4);
        let event_types = nakadi_testkit::topics::load(Path::new(sql_dir), Path::new(recordings))
            .map_err(|e| e.to_string())?;
        for event_type in event_types {
            let name = event_type.name().to_string();
            bus.add_event_type(event_type.document, event_type.recorded_partitions.max(1))?;
            bus.append_recording(&name, &event_type.recording)?;
        }
        let (address, server) = bus.start(listen).await.map_err(|e| e.to_string())?;
        println!("{LISTENING}{address}");
        server.await.map_err(|e| e.to_string())
    })
}
