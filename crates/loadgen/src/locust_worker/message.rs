//! Locust's worker messages on the wire: one ZeroMQ frame holding the msgpack array
//! `[type, data, node_id]` (Locust 2.47, `locust/rpc/protocol.py`). `data` is whatever the
//! type carries (`None`, a version string, a dict), so it stays an [`rmpv::Value`] and the
//! driver reads the few fields it needs by name.
//!
//! Locust's msgpack `default` turns a `datetime` into `{"__datetime__": true, "as_str": ...}`;
//! nothing a worker needs carries one (the spawn message's `parsed_options` may), so such maps
//! are decoded as the maps they are, and ignored.

use rmpv::Value;

/// One message, either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// `client_ready`, `spawn`, `stats`, ...
    pub kind: String,
    /// What it carries (`Nil` for none).
    pub data: Value,
    /// The worker's id (`HOST_UUID`), on both sides' messages.
    pub node_id: String,
}

/// A frame that is not one of Locust's messages.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not msgpack.
    #[error("not msgpack: {0}")]
    Msgpack(#[from] rmpv::decode::Error),
    /// msgpack, but not `[type, data, node_id]`.
    #[error("not a Locust message (expected [type, data, node_id]): {0}")]
    Shape(String),
}

impl Message {
    /// A message from this worker.
    pub fn new(kind: &str, data: Value, node_id: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            data,
            node_id: node_id.to_owned(),
        }
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let value = Value::Array(vec![
            Value::from(self.kind.as_str()),
            self.data.clone(),
            Value::from(self.node_id.as_str()),
        ]);
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &value);
        out
    }

    /// Reads one frame.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, DecodeError> {
        let value = rmpv::decode::read_value(&mut bytes)?;
        let Value::Array(mut parts) = value else {
            return Err(DecodeError::Shape(value.to_string()));
        };
        if parts.len() != 3 {
            return Err(DecodeError::Shape(format!("{} elements", parts.len())));
        }
        let node_id = parts.pop().unwrap_or(Value::Nil);
        let data = parts.pop().unwrap_or(Value::Nil);
        let kind = parts.pop().unwrap_or(Value::Nil);
        let Value::String(kind) = kind else {
            return Err(DecodeError::Shape(format!("type {kind}")));
        };
        Ok(Self {
            kind: kind.into_str().unwrap_or_default(),
            data,
            node_id: node_id.as_str().unwrap_or_default().to_owned(),
        })
    }
}

/// The field `key` of a msgpack map, if `value` is one and has it.
pub fn field<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    value
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// A map with string keys, in the order given.
pub fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reads_back_as_written() {
        let message = Message::new(
            "stats",
            map([("user_count", Value::from(4)), ("errors", map([]))]),
            "host_abc",
        );
        assert_eq!(Message::decode(&message.encode()).unwrap(), message);
    }

    #[test]
    fn python_msgpack_bytes_decode() {
        // msgpack.dumps(("ack", {"index": 0}, "w1")) in Locust's Python.
        let bytes = [
            0x93, 0xa3, b'a', b'c', b'k', 0x81, 0xa5, b'i', b'n', b'd', b'e', b'x', 0x00, 0xa2,
            b'w', b'1',
        ];
        let message = Message::decode(&bytes).unwrap();
        assert_eq!(message.kind, "ack");
        assert_eq!(message.node_id, "w1");
        assert_eq!(field(&message.data, "index"), Some(&Value::from(0)));
    }

    #[test]
    fn other_frames_are_refused_with_what_they_were() {
        let mut two = Vec::new();
        rmpv::encode::write_value(&mut two, &Value::Array(vec![1.into(), 2.into()])).unwrap();
        assert!(
            Message::decode(&two)
                .unwrap_err()
                .to_string()
                .contains("2 elements")
        );
        assert!(Message::decode(&[0xc1]).is_err());
    }
}
