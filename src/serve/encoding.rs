//! Compressed request bodies (`Content-Encoding: gzip` or `deflate`),
//! inflated with the same size limit as plain bodies.

use std::io::Read;

use super::error::ServeError;

/// Inflates `body` as `encoding` says, refusing more than `limit` bytes of
/// output (a small compressed body must not become a huge one).
pub fn inflate(
    body: bytes::Bytes,
    encoding: Option<&str>,
    limit: usize,
) -> Result<bytes::Bytes, ServeError> {
    let reader: Box<dyn Read + '_> = match encoding {
        None | Some("identity") => return Ok(body),
        Some("gzip" | "x-gzip") => Box::new(flate2::read::GzDecoder::new(&body[..])),
        // HTTP's `deflate` is the zlib format (RFC 9110 §8.4.1.2).
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Some(other) => return Err(ServeError::UnsupportedEncoding(other.to_string())),
    };
    let mut out = Vec::new();
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| ServeError::Inflate {
            encoding: encoding.unwrap_or_default().to_string(),
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(ServeError::BodyTooLarge { limit });
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> bytes::Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap().into()
    }

    #[test]
    fn gzip_and_deflate_inflate_to_the_original() {
        let body = b"{\"inputs\":[]}".repeat(10);
        assert_eq!(inflate(gzip(&body), Some("gzip"), 1000).unwrap(), &body[..]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&body).unwrap();
        let z: bytes::Bytes = z.finish().unwrap().into();
        assert_eq!(inflate(z, Some("deflate"), 1000).unwrap(), &body[..]);
    }

    #[test]
    fn bombs_garbage_and_unknown_encodings_are_refused() {
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 10_000);
        assert!(matches!(
            inflate(bomb, Some("gzip"), 1 << 16),
            Err(ServeError::BodyTooLarge { .. })
        ));
        let err = inflate(bytes::Bytes::from_static(b"not gzip"), Some("gzip"), 100).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{err}");
        let err = inflate(bytes::Bytes::from_static(b"x"), Some("br"), 100).unwrap_err();
        assert!(err.to_string().contains("`br` is not supported"), "{err}");
    }
}
