//! A minimal XML writer for AWS response bodies (elements and escaped text), and a
//! reader of the few fields nimbus takes from XML documents.

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

/// The text of `fields` inside each `element` of an XML document, in order.
pub fn records(
    document: &[u8],
    element: &str,
    fields: &[&str],
) -> Result<Vec<Vec<String>>, quick_xml::Error> {
    use quick_xml::escape::EscapeError;
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(document);
    let mut records = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut field: Option<usize> = None;
    loop {
        match reader.read_event()? {
            Event::Start(start) => {
                let name = start.local_name();
                if name.as_ref() == element.as_bytes() {
                    current = Some(vec![String::new(); fields.len()]);
                } else if current.is_some() {
                    field = fields.iter().position(|f| f.as_bytes() == name.as_ref());
                }
            }
            Event::Text(text) => {
                if let (Some(record), Some(at)) = (current.as_mut(), field) {
                    record[at].push_str(&text.decode().map_err(quick_xml::Error::from)?);
                }
            }
            Event::CData(data) => {
                if let (Some(record), Some(at)) = (current.as_mut(), field) {
                    record[at].push_str(&data.decode().map_err(quick_xml::Error::from)?);
                }
            }
            // Character references (`&#13;`, as writers escape a carriage return)
            // and the predefined entities; any other is refused, never dropped.
            Event::GeneralRef(reference) => {
                if let (Some(record), Some(at)) = (current.as_mut(), field) {
                    if let Some(c) = reference.resolve_char_ref()? {
                        record[at].push(c);
                    } else {
                        let name = reference.decode().map_err(quick_xml::Error::from)?;
                        let resolved =
                            quick_xml::escape::resolve_xml_entity(&name).ok_or_else(|| {
                                EscapeError::UnrecognizedEntity(0..0, name.clone().into_owned())
                            })?;
                        record[at].push_str(resolved);
                    }
                }
            }
            Event::End(end) => {
                if end.local_name().as_ref() == element.as_bytes() {
                    records.extend(current.take());
                }
                field = None;
            }
            Event::Eof => return Ok(records),
            _ => {}
        }
    }
}

/// The `fields` of the first `element` of an XML document (an AWS answer), when it
/// has them all.
pub fn first_record(document: &[u8], element: &str, fields: &[&str]) -> Option<Vec<String>> {
    let record = records(document, element, fields)
        .ok()?
        .into_iter()
        .next()?;
    record
        .iter()
        .all(|field| !field.is_empty())
        .then_some(record)
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

    #[test]
    fn records_read_fields_with_their_entities() {
        let document = b"<R><Credentials><AccessKeyId>ASIA</AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials><Other>x</Other></R>";
        let read = records(document, "Credentials", &["AccessKeyId", "SessionToken"]).unwrap();
        assert_eq!(read, [["ASIA", "a&b"]]);
        assert!(
            records(b"<R><Other/></R>", "Credentials", &["AccessKeyId"])
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            first_record(document, "Credentials", &["AccessKeyId"]),
            Some(vec!["ASIA".into()])
        );
        assert_eq!(
            first_record(document, "Credentials", &["AccessKeyId", "Missing"]),
            None
        );
    }

    /// Found by the xml fuzz target: a key with a carriage return, written as `&#13;`,
    /// lost it, so `DeleteObjects` deleted another key than the one named.
    #[test]
    fn records_read_every_form_of_text_or_refuse_the_document() {
        let mut xml = XmlWriter::new();
        xml.open("Delete");
        xml.open("Object");
        xml.leaf("Key", "a\r\nb");
        xml.close("Object");
        xml.close("Delete");
        let written = xml.finish();
        assert_eq!(
            records(written.as_bytes(), "Object", &["Key"]).unwrap(),
            [["a\r\nb"]]
        );
        let document = b"<D><O><K>&#x41;&#46;<![CDATA[<raw>&]]>&amp;</K></O></D>";
        assert_eq!(records(document, "O", &["K"]).unwrap(), [["A.<raw>&&"]]);
        assert!(records(b"<D><O><K>a&nope;b</K></O></D>", "O", &["K"]).is_err());
    }
}
