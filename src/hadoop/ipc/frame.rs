//! Hadoop IPC framing: after the 7-byte preamble every packet is a 4-byte big-endian length and
//! then varint-delimited protobuf messages (header first).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::Message;

use super::IpcError;
use crate::hadoop::proto::common as pb;

/// `hrpc`, version 9, service class 0, then the auth protocol byte.
pub const PREAMBLE_PREFIX: [u8; 6] = [b'h', b'r', b'p', b'c', 9, 0];
/// Auth protocol byte: no SASL.
pub const AUTH_NONE: u8 = 0x00;
/// Auth protocol byte: SASL (-33, the SASL call id).
pub const AUTH_SASL: u8 = 0xDF;

pub const SASL_CALL_ID: i32 = -33;
pub const CONNECTION_CONTEXT_CALL_ID: i32 = -3;

/// The largest response we accept (Hadoop's default `ipc.maximum.response.length` is 128 MiB).
pub const MAX_FRAME: usize = 128 << 20;

/// The RPC request header of a call.
pub fn request_header(call_id: i32, client_id: &[u8], retry: i32) -> pb::RpcRequestHeaderProto {
    pb::RpcRequestHeaderProto {
        rpc_kind: Some(pb::RpcKindProto::RpcProtocolBuffer as i32),
        rpc_op: Some(pb::rpc_request_header_proto::OperationProto::RpcFinalPacket as i32),
        call_id,
        client_id: client_id.to_vec(),
        retry_count: Some(retry),
        ..Default::default()
    }
}

/// One packet: length prefix + each message varint-delimited.
pub fn encode_packet(messages: &[&dyn EncodeDelimited]) -> Bytes {
    let body_len: usize = messages.iter().map(|m| m.delimited_len()).sum();
    let mut out = BytesMut::with_capacity(4 + body_len);
    out.put_u32(body_len as u32);
    for m in messages {
        m.encode_delimited(&mut out);
    }
    out.freeze()
}

/// A message that can be written varint-delimited (prost messages and raw encoded bodies).
pub trait EncodeDelimited: Sync {
    fn delimited_len(&self) -> usize;
    fn encode_delimited(&self, out: &mut BytesMut);
}

impl<M: Message> EncodeDelimited for M {
    fn delimited_len(&self) -> usize {
        let l = self.encoded_len();
        prost::length_delimiter_len(l) + l
    }
    fn encode_delimited(&self, out: &mut BytesMut) {
        self.encode_length_delimited(out)
            .expect("BytesMut grows as needed");
    }
}

/// An already encoded message body.
pub struct Raw<'a>(pub &'a [u8]);

impl EncodeDelimited for Raw<'_> {
    fn delimited_len(&self) -> usize {
        prost::length_delimiter_len(self.0.len()) + self.0.len()
    }
    fn encode_delimited(&self, out: &mut BytesMut) {
        prost::encode_length_delimiter(self.0.len(), out).expect("BytesMut grows as needed");
        out.put_slice(self.0);
    }
}

/// Checks a length prefix before anything is allocated for it.
pub fn check_len(len: u32) -> Result<usize, IpcError> {
    let len = len as usize;
    if len > MAX_FRAME {
        return Err(IpcError::Protocol(format!(
            "frame length {len} exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    Ok(len)
}

/// A decoded response packet: its header and the (still delimited) rest.
pub struct ResponsePacket {
    pub header: pb::RpcResponseHeaderProto,
    pub rest: Bytes,
}

/// Decodes a response packet body (after the length prefix).
pub fn decode_response(mut body: Bytes) -> Result<ResponsePacket, IpcError> {
    let header = pb::RpcResponseHeaderProto::decode_length_delimited(&mut body)
        .map_err(|e| IpcError::Protocol(format!("undecodable response header: {e}")))?;
    Ok(ResponsePacket { header, rest: body })
}

/// The next varint-delimited message of `rest`, as raw bytes.
pub fn next_delimited(rest: &mut Bytes) -> Result<Bytes, IpcError> {
    let len = prost::decode_length_delimiter(&mut *rest)
        .map_err(|e| IpcError::Protocol(format!("bad length delimiter: {e}")))?;
    if len > rest.remaining() {
        return Err(IpcError::Protocol(format!(
            "message of {len} bytes but only {} in the frame",
            rest.remaining()
        )));
    }
    Ok(rest.split_to(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_packet_matches_golden_bytes() {
        // Header {rpcKind=2, rpcOp=0, callId=5 (zigzag 10), clientId=[0xab; 2], retryCount=0}.
        let h = request_header(5, &[0xab, 0xab], 0);
        let p = encode_packet(&[&h, &Raw(b"\x08\x01")]);
        assert_eq!(
            p.as_ref(),
            &[
                0, 0, 0, 16, // length
                12, 0x08, 2, 0x10, 0, 0x18, 10, 0x22, 2, 0xab, 0xab, 0x28, 0, // header
                2, 0x08, 0x01, // body
            ][..]
        );
    }

    #[test]
    fn sasl_call_id_round_trips_through_uint32() {
        // The server answers SASL with callId 0xFFFFFFDF in a uint32 field.
        let h = pb::RpcResponseHeaderProto {
            call_id: SASL_CALL_ID as u32,
            status: 0,
            ..Default::default()
        };
        let mut b = BytesMut::new();
        h.encode_delimited(&mut b);
        let p = decode_response(b.freeze()).unwrap();
        assert_eq!(p.header.call_id as i32, SASL_CALL_ID);
    }

    #[test]
    fn oversized_and_garbage_frames_are_errors() {
        assert!(check_len(u32::MAX).is_err());
        assert!(check_len(1024).is_ok());
        assert!(decode_response(Bytes::from_static(b"\xff\xff\xff")).is_err());
        let mut x: u32 = 12345;
        for n in 0..500 {
            let mut v = Vec::new();
            for _ in 0..(n % 40) {
                x = x.wrapping_mul(1103515245).wrapping_add(12345);
                v.push((x >> 16) as u8);
            }
            if let Ok(mut p) = decode_response(Bytes::from(v)) {
                let _ = next_delimited(&mut p.rest);
            }
        }
        let mut rest = Bytes::from_static(b"\x05ab");
        assert!(
            next_delimited(&mut rest)
                .unwrap_err()
                .to_string()
                .contains("only 2")
        );
    }
}
