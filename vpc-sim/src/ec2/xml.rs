//! A small XML writer for EC2's response documents.

use std::fmt::{Display, Write};

pub const EC2_XMLNS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

#[derive(Default)]
pub struct Xml {
    buf: String,
}

impl Xml {
    /// `<{Action}Response xmlns=...><requestId>..</requestId>{body}</{Action}Response>`
    pub fn response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> String {
        let mut x = Xml::default();
        x.buf
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = write!(x.buf, "<{action}Response xmlns=\"{EC2_XMLNS}\">");
        x.leaf("requestId", request_id);
        body(&mut x);
        let _ = write!(x.buf, "</{action}Response>");
        x.buf
    }

    /// EC2's error document.
    pub fn error(code: &str, message: &str, request_id: &str) -> String {
        let mut x = Xml::default();
        x.buf
            .push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>");
        x.leaf("Code", code);
        x.leaf("Message", message);
        x.buf.push_str("</Error></Errors>");
        x.leaf("RequestID", request_id);
        x.buf.push_str("</Response>");
        x.buf
    }

    pub fn leaf(&mut self, tag: &str, value: impl Display) {
        let _ = write!(self.buf, "<{tag}>");
        escape_into(&mut self.buf, &value.to_string());
        let _ = write!(self.buf, "</{tag}>");
    }

    pub fn opt_leaf(&mut self, tag: &str, value: Option<impl Display>) {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
    }

    pub fn elem(&mut self, tag: &str, body: impl FnOnce(&mut Xml)) {
        let _ = write!(self.buf, "<{tag}>");
        body(self);
        let _ = write!(self.buf, "</{tag}>");
    }

    /// `<tag><item>..</item>...</tag>`, EC2's list shape.
    pub fn list<T>(
        &mut self,
        tag: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) {
        self.elem(tag, |x| {
            for item in items {
                x.elem("item", |x| each(x, item));
            }
        });
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_wraps() {
        let doc = Xml::response("CreateTags", "r-1", |x| x.leaf("return", "a<b&c"));
        assert!(
            doc.contains("<CreateTagsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">")
        );
        assert!(doc.contains("<return>a&lt;b&amp;c</return>"));
        let err = Xml::error("AuthFailure", "no", "r-2");
        assert!(err.contains("<Response><Errors><Error><Code>AuthFailure</Code><Message>no</Message></Error></Errors><RequestID>r-2</RequestID></Response>"));
    }
}
