//! The container monitor: one small process per container (`nimbus container-monitor`),
//! started in its own process group so it outlives nimbus. It runs the OCI runtime in
//! the foreground, holds the container's stdout and stderr, appends every line with
//! its time to a file in the container's directory and records the exit code there.
//! nimbus ships that file to the logs service at its own pace, so a slow log sink never
//! blocks the container, and a restarted nimbus re-adopts the container from these
//! files.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

/// The container's output, lines of `<unix ms> <text>`.
pub const OUTPUT: &str = "output";
/// The container's exit code, written once it has ended.
pub const EXIT: &str = "exit";
/// The monitor's pid, to tell a live monitor from a lost one.
pub const MONITOR_PID: &str = "monitor";
/// CloudWatch's largest event; longer lines are split.
const MAX_LINE: usize = 256 * 1024;

/// Runs container `id` from the bundle in `dir` with `runtime` (its state under
/// `state`) until it ends.
pub fn run(runtime: &Path, state: &Path, dir: &Path, id: &str) -> ExitCode {
    match monitor(runtime, state, dir, id) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Nothing else will say why: record it where nimbus looks.
            let _ = append_line(
                &dir.join(OUTPUT),
                format!("nimbus monitor: {err}").as_bytes(),
            );
            let _ = write_exit(dir, 255);
            ExitCode::FAILURE
        }
    }
}

fn monitor(runtime: &Path, state: &Path, dir: &Path, id: &str) -> std::io::Result<()> {
    nimbus_storage::write_atomic(
        &dir.join(MONITOR_PID),
        std::process::id().to_string().as_bytes(),
        0o644,
    )?;
    let output = Arc::new(Mutex::new(
        File::options()
            .create(true)
            .append(true)
            .open(dir.join(OUTPUT))?,
    ));
    let mut child = Command::new(runtime)
        .arg("--root")
        .arg(state)
        .arg("run")
        .arg("--bundle")
        .arg(dir)
        .arg("--pid-file")
        .arg(dir.join("pid"))
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pumps: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|source| {
        let output = output.clone();
        std::thread::spawn(move || pump(source, &output))
    })
    .collect();
    let status = child.wait()?;
    // The container's processes are gone with its pid namespace, so the pipes close.
    for pump in pumps {
        let _ = pump.join();
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9));
    write_exit(dir, code)
}

/// Copies lines from `source` to the output file, each with its time.
fn pump(mut source: Box<dyn Read + Send>, output: &Mutex<File>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = pending[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| start + i)
            .or_else(|| (pending.len() - start >= MAX_LINE).then(|| start + MAX_LINE))
        {
            write_line(output, &pending[start..end]);
            start = if pending.get(end) == Some(&b'\n') {
                end + 1
            } else {
                end
            };
        }
        pending.drain(..start);
    }
    if !pending.is_empty() {
        write_line(output, &pending);
    }
}

fn write_line(output: &Mutex<File>, line: &[u8]) {
    let mut record = format!("{} ", now_ms()).into_bytes();
    record.extend_from_slice(line);
    record.push(b'\n');
    // One write per line: the two pumps never interleave within a line.
    let _ = output.lock().expect("output file").write_all(&record);
}

fn append_line(path: &Path, line: &[u8]) -> std::io::Result<()> {
    let file = File::options().create(true).append(true).open(path)?;
    write_line(&Mutex::new(file), line);
    Ok(())
}

fn write_exit(dir: &Path, code: i32) -> std::io::Result<()> {
    nimbus_storage::write_atomic(&dir.join(EXIT), code.to_string().as_bytes(), 0o644)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Splits the complete lines at the start of `data` (as the monitor writes them)
/// into their times and texts; the bytes they take.
pub fn parse_lines(data: &[u8]) -> (Vec<(i64, String)>, usize) {
    let mut lines = Vec::new();
    let mut used = 0;
    while let Some(end) = data[used..].iter().position(|&b| b == b'\n') {
        let line = &data[used..used + end];
        used += end + 1;
        let (time, text) = match line.iter().position(|&b| b == b' ') {
            Some(space) => (&line[..space], &line[space + 1..]),
            None => (line, &[][..]),
        };
        let time = std::str::from_utf8(time)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(now_ms);
        lines.push((time, String::from_utf8_lossy(text).into_owned()));
    }
    (lines, used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_times_and_split_when_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join(OUTPUT)).unwrap();
        let output = Mutex::new(file);
        let mut input = b"one\ntwo\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        pump(Box::new(std::io::Cursor::new(input)), &output);
        let data = std::fs::read(dir.path().join(OUTPUT)).unwrap();
        let (lines, used) = parse_lines(&data);
        assert_eq!(used, data.len());
        let texts: Vec<usize> = lines.iter().map(|(_, t)| t.len()).collect();
        assert_eq!(texts, [3, 3, MAX_LINE, 10]);
        assert_eq!(lines[0].1, "one");
        assert!(lines.iter().all(|(t, _)| *t > 1_600_000_000_000));
        // A line still being written is left for later.
        let (partial, used) = parse_lines(b"12 done\n13 half");
        assert_eq!(partial, [(12, "done".to_owned())]);
        assert_eq!(used, 8);
    }
}
