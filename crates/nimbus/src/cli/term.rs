//! What a person at a terminal sees: colours on statuses and errors, and progress
//! bars on uploads; nothing of it when the output goes to a pipe or `NO_COLOR` is set.

use std::io::{IsTerminal, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Good,
    Busy,
    Bad,
}

/// Whether to colour what goes to stdout (`stderr` false) or stderr.
fn colours(stderr: bool) -> bool {
    let terminal = if stderr {
        std::io::stderr().is_terminal()
    } else {
        std::io::stdout().is_terminal()
    };
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `text` in `style`, when the stream it goes to is a terminal that takes colours.
pub fn paint(text: &str, style: Style, stderr: bool) -> String {
    if !colours(stderr) {
        return text.to_owned();
    }
    let code = match style {
        Style::Bold => "1",
        Style::Good => "32",
        Style::Busy => "33",
        Style::Bad => "31",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// The colour a status word deserves in a table.
pub fn status_style(cell: &str) -> Option<Style> {
    match cell {
        "Active" | "ACTIVE" | "RUNNING" | "running" | "Successful" | "healthy" => Some(Style::Good),
        "Pending" | "PENDING" | "PROVISIONING" | "ACTIVATING" | "InProgress" | "DEACTIVATING"
        | "STOPPING" | "DEPROVISIONING" => Some(Style::Busy),
        "Failed" | "Inactive" | "STOPPED" | "unavailable" | "unhealthy" | "INACTIVE" => {
            Some(Style::Bad)
        }
        _ => None,
    }
}

/// A request body handed to the connection in pieces, drawing a progress bar on
/// stderr as they go (when stderr is a terminal).
pub struct Upload {
    data: Bytes,
    sent: usize,
    bar: Option<String>,
}

const PIECE: usize = 256 * 1024;
const BAR_WIDTH: usize = 30;

impl Upload {
    /// `label` names the upload on its bar; `None` draws none.
    pub fn new(data: Vec<u8>, label: Option<String>) -> Self {
        let bar = label.filter(|_| std::io::stderr().is_terminal() && data.len() > PIECE);
        Self {
            data: Bytes::from(data),
            sent: 0,
            bar,
        }
    }

    /// The whole body, as signed.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    fn draw(&self) {
        let Some(label) = &self.bar else { return };
        let total = self.data.len();
        let filled = BAR_WIDTH * self.sent / total;
        let line = format!(
            "\r{label} [{}{}] {:>3}% {:.1}/{:.1} MB",
            "#".repeat(filled),
            "-".repeat(BAR_WIDTH - filled),
            100 * self.sent / total,
            self.sent as f64 / 1e6,
            total as f64 / 1e6
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        if self.sent == total {
            let _ = err.write_all(b"\n");
        }
        let _ = err.flush();
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.sent >= self.data.len() {
            return Poll::Ready(None);
        }
        let end = (self.sent + PIECE).min(self.data.len());
        let piece = self.data.slice(self.sent..end);
        self.sent = end;
        self.draw();
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.data.len()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.data.len() - self.sent) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn an_upload_gives_all_its_bytes_in_pieces() {
        let data: Vec<u8> = (0..PIECE * 2 + 7).map(|i| i as u8).collect();
        let upload = Upload::new(data.clone(), Some("test".into()));
        assert_eq!(upload.size_hint().exact(), Some(data.len() as u64));
        let collected = upload.collect().await.unwrap().to_bytes();
        assert_eq!(collected, data);
    }

    #[test]
    fn statuses_have_colours() {
        assert_eq!(status_style("RUNNING"), Some(Style::Good));
        assert_eq!(status_style("STOPPED"), Some(Style::Bad));
        assert_eq!(status_style("hello"), None);
    }
}
