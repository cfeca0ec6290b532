//! A minimal XML writer for AWS response bodies: elements and escaped text.

/// Builds an XML document element by element.
#[derive(Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn open(&mut self, tag: &str) {
        self.open_with_namespace(tag, None);
    }

    pub fn open_with_namespace(&mut self, tag: &str, namespace: Option<&str>) {
        self.out.push('<');
        self.out.push_str(tag);
        if let Some(namespace) = namespace {
            self.out.push_str(" xmlns=\"");
            escape_into(&mut self.out, namespace);
            self.out.push('"');
        }
        self.out.push('>');
    }

    pub fn close(&mut self, tag: &str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag>text</tag>` with the text escaped.
    pub fn leaf(&mut self, tag: &str, text: &str) {
        self.open(tag);
        escape_into(&mut self.out, text);
        self.close(tag);
    }

    /// Escaped text inside the element open last.
    pub fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    /// Appends what another writer wrote, as elements here.
    pub fn append(&mut self, other: XmlWriter) {
        self.out.push_str(&other.out);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_into(out: &mut String, text: &str) {
    if !text.contains(['<', '>', '&', '"', '\'', '\r']) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_attributes_are_escaped() {
        let mut xml = XmlWriter::new();
        xml.open_with_namespace("R", Some("urn:a\"b"));
        xml.leaf("K", "<a & 'b'>");
        xml.close("R");
        assert_eq!(
            xml.finish(),
            "<R xmlns=\"urn:a&quot;b\"><K>&lt;a &amp; &apos;b&apos;&gt;</K></R>"
        );
    }
}
