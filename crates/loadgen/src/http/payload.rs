//! Request bodies: JSON, urlencoded forms and multipart uploads.

use bytes::{BufMut, Bytes, BytesMut};

/// A request body, ready to send.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The bytes.
    pub bytes: Bytes,
}

impl Payload {
    /// A JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Self {
            content_type: Some("application/json".into()),
            bytes: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// An urlencoded form.
    pub fn form<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let encoded = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        Self {
            content_type: Some("application/x-www-form-urlencoded".into()),
            bytes: Bytes::from(encoded),
        }
    }

    /// A multipart form: text fields and files.
    pub fn multipart(parts: &[MultipartField<'_>]) -> Self {
        let boundary = format!("loadgen-{:016x}", rand::random::<u64>());
        let size: usize = parts.iter().map(|p| p.bytes.len() + 200).sum();
        let mut body = BytesMut::with_capacity(size + 64);
        for part in parts {
            body.put_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = match part.filename {
                Some(filename) => format!(
                    "Content-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\n",
                    part.name, filename
                ),
                None => format!("Content-Disposition: form-data; name=\"{}\"\r\n", part.name),
            };
            body.put_slice(disposition.as_bytes());
            if let Some(content_type) = part.content_type {
                body.put_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
            }
            body.put_slice(b"\r\n");
            body.put_slice(part.bytes);
            body.put_slice(b"\r\n");
        }
        body.put_slice(format!("--{boundary}--\r\n").as_bytes());
        Self {
            content_type: Some(format!("multipart/form-data; boundary={boundary}")),
            bytes: body.freeze(),
        }
    }
}

/// One field of a multipart body.
#[derive(Debug)]
pub struct MultipartField<'a> {
    /// Field name.
    pub name: &'a str,
    /// File name, for file parts.
    pub filename: Option<&'a str>,
    /// Content type, for file parts.
    pub content_type: Option<&'a str>,
    /// The content.
    pub bytes: &'a [u8],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_bodies_have_the_parts() {
        let payload = Payload::multipart(&[MultipartField {
            name: "file",
            filename: Some("a.mp4"),
            content_type: Some("video/mp4"),
            bytes: b"DATA",
        }]);
        let text = String::from_utf8(payload.bytes.to_vec()).unwrap();
        let content_type = payload.content_type.unwrap();
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\nDATA\r\n")));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
        let form = Payload::form([("username", "a b"), ("password", "p&q")]);
        assert_eq!(&form.bytes[..], b"username=a+b&password=p%26q");
    }
}
