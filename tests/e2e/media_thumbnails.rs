//! Thumbnails through the gateway: the sizes served for common requests, `inline` image
//! responses, the legacy path frozen, and bad requests refused.

use trellis_testkit::TestServer;

use super::{get, upload_id, user};

both_modes!(thumbnails_are_served);

/// A `w`×`h` RGB PNG, uncompressed (stored deflate blocks), so no image library is needed.
pub(crate) fn png(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }
    let mut raw = Vec::new();
    for y in 0..h {
        raw.push(0u8);
        for x in 0..w {
            raw.extend_from_slice(&[(x % 256) as u8, (y % 256) as u8, 128]);
        }
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &z);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// Width and height from a PNG's header.
fn png_size(data: &[u8]) -> (u32, u32) {
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let n = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    (n(16), n(20))
}

async fn thumbnails_are_served(server: TestServer) {
    let token = user(&server, "alice").await;
    let id = upload_id(&server, &token, png(640, 400), "image/png").await;
    let thumb = |q: &str| format!("/_matrix/client/v1/media/thumbnail/localhost/{id}?{q}");
    for (q, want) in [
        ("width=32&height=32&method=crop", (32, 32)),
        ("width=90&height=60&method=crop", (96, 96)),
        ("width=300&height=200&method=scale", (320, 200)),
        ("width=320&height=240", (320, 200)),
        ("width=96&height=96&method=crop&animated=true&allow_remote=true&timeout_ms=100", (96, 96)),
    ] {
        let resp = get(&server, &thumb(q), Some(&token)).await;
        assert_eq!(resp.status().as_u16(), 200, "{q}");
        assert_eq!(resp.headers()["content-type"], "image/png");
        assert_eq!(resp.headers()["content-disposition"], "inline; filename=\"thumbnail.png\"");
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        assert_eq!(png_size(&resp.bytes().await.unwrap()), want, "{q}");
    }
    // As big as the image or bigger: the image itself.
    let resp = get(&server, &thumb("width=800&height=600&method=scale"), Some(&token)).await;
    assert_eq!(png_size(&resp.bytes().await.unwrap()), (640, 400));

    // The legacy path is frozen like legacy downloads; the authenticated one wants a token.
    let legacy = format!("/_matrix/media/v3/thumbnail/localhost/{id}?width=32&height=32");
    assert_eq!(get(&server, &legacy, None).await.status().as_u16(), 404);
    assert_eq!(get(&server, &thumb("width=32&height=32"), None).await.status().as_u16(), 401);

    for (q, status, errcode) in [
        ("height=32", 400, "M_MISSING_PARAM"),
        ("width=-1&height=32", 400, "M_INVALID_PARAM"),
        ("width=0&height=32", 400, "M_INVALID_PARAM"),
        ("width=32&height=32&method=zoom", 400, "M_INVALID_PARAM"),
    ] {
        let resp = get(&server, &thumb(q), Some(&token)).await;
        assert_eq!(resp.status().as_u16(), status, "{q}");
        assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["errcode"], errcode, "{q}");
    }
    let text = upload_id(&server, &token, b"not an image".to_vec(), "text/plain").await;
    let resp =
        get(&server, &format!("/_matrix/client/v1/media/thumbnail/localhost/{text}?width=32&height=32"), Some(&token))
            .await;
    assert_eq!(resp.status().as_u16(), 400);
}
