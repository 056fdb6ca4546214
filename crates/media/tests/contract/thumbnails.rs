//! Thumbnails: the common sizes made at upload, the size chosen for a request, the cache,
//! animation, and what is refused (non-images, images over the pixel limit, bad requests).

use std::io::Cursor;

use image::{DynamicImage, Frame, ImageFormat, Rgba, RgbaImage};
use trellis_core::ErrorCode;

use crate::support::{Fixture, MB, Via, chunked, expect_err, meta};

fn encode(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbaImage::from_fn(w, h, |x, y| Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255]));
    let img = if format == ImageFormat::Jpeg {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(img).to_rgb8())
    } else {
        DynamicImage::ImageRgba8(img)
    };
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}

fn size_of(data: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(data).expect("a decodable thumbnail");
    (img.width(), img.height())
}

async fn upload_image(fx: &Fixture, data: &[u8], content_type: &str) -> String {
    let id = fx.upload(meta(content_type, Some("pic"), None), chunked(data, &[50_000])).await.unwrap();
    fx.media.thumbnails_settled(&id).await;
    id
}

async fn common_sizes_and_choice(via: Via) {
    let fx = Fixture::new(via, 4 * MB).await;
    let png = encode(1000, 800, ImageFormat::Png);
    let id = upload_image(&fx, &png, "image/png").await;
    assert_eq!(fx.media.thumbnail_count(&id).await.unwrap(), 5, "32/96 crops and 320/640/800 scales made at upload");

    for (w, h, method, want) in [
        (32, 32, "crop", (32, 32)),
        (64, 64, "crop", (96, 96)),
        (100, 100, "scale", (300, 240)),
        (320, 240, "", (300, 240)),
        (600, 400, "scale", (600, 480)),
        (800, 600, "scale", (750, 600)),
    ] {
        let (m, data) = fx.thumbnail(&id, w, h, method, false).await.unwrap();
        assert_eq!(m.content_type, "image/png");
        assert_eq!(m.filename.as_deref(), Some("thumbnail.png"));
        assert_eq!(m.length, data.len() as u64);
        assert_eq!(size_of(&data), want, "{w}x{h} {method}");
    }
    assert_eq!(fx.media.thumbnail_count(&id).await.unwrap(), 5, "all served from the cache");

    // Past the common sizes: made on demand (never upscaled), then cached.
    let (_, data) = fx.thumbnail(&id, 100, 900, "crop", false).await.unwrap();
    let (w, h) = size_of(&data);
    assert!(h == 800 && w < 800, "a tall crop within the image: {w}x{h}");
    assert_eq!(fx.media.thumbnail_count(&id).await.unwrap(), 6);
    fx.thumbnail(&id, 100, 900, "crop", false).await.unwrap();
    assert_eq!(fx.media.thumbnail_count(&id).await.unwrap(), 6);

    // No bigger than asked: the image itself.
    let (m, data) = fx.thumbnail(&id, 1000, 1000, "scale", false).await.unwrap();
    assert!(data == png && m.content_type == "image/png");
}

async fn formats_and_animation(via: Via) {
    let fx = Fixture::new(via, 4 * MB).await;
    let jpeg = upload_image(&fx, &encode(500, 500, ImageFormat::Jpeg), "image/jpeg").await;
    let (m, data) = fx.thumbnail(&jpeg, 96, 96, "crop", false).await.unwrap();
    assert_eq!((m.content_type.as_str(), size_of(&data)), ("image/jpeg", (96, 96)));

    let webp = upload_image(&fx, &encode(500, 300, ImageFormat::WebP), "image/webp").await;
    let (m, data) = fx.thumbnail(&webp, 320, 240, "scale", true).await.unwrap();
    assert_eq!((m.content_type.as_str(), size_of(&data)), ("image/png", (320, 192)), "a still WebP stays still");

    let mut gif = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new(&mut gif);
        let frames = (0..4u32).map(|i| {
            Frame::new(RgbaImage::from_fn(300, 200, move |x, _| Rgba([((x + i * 60) % 256) as u8, 0, 0, 255])))
        });
        enc.encode_frames(frames).unwrap();
    }
    let gif = upload_image(&fx, &gif, "image/gif").await;
    let (m, data) = fx.thumbnail(&gif, 96, 96, "crop", true).await.unwrap();
    assert_eq!(m.content_type, "image/gif");
    let frames = image::AnimationDecoder::into_frames(image::codecs::gif::GifDecoder::new(Cursor::new(&data)).unwrap());
    assert_eq!(frames.count(), 4, "every frame kept");
    let (m, _) = fx.thumbnail(&gif, 96, 96, "crop", false).await.unwrap();
    assert_eq!(m.content_type, "image/png", "animated=false is a still");
}

async fn refusals(via: Via) {
    let fx = Fixture::with(via, 4 * MB, |s| s.max_image_pixels = 250_000).await;
    let text = fx.upload(meta("text/plain", None, None), chunked(b"hello", &[5])).await.unwrap();
    expect_err(fx.thumbnail(&text, 32, 32, "crop", false).await, ErrorCode::Unknown, 400);
    // Claims to be an image, is not one.
    let fake = fx.upload(meta("image/png", None, None), chunked(b"<html>not a png</html>", &[8])).await.unwrap();
    expect_err(fx.thumbnail(&fake, 32, 32, "crop", false).await, ErrorCode::Unknown, 400);

    let big = upload_image(&fx, &encode(600, 600, ImageFormat::Png), "image/png").await;
    expect_err(fx.thumbnail(&big, 32, 32, "crop", false).await, ErrorCode::TooLarge, 413);
    assert_eq!(fx.media.thumbnail_count(&big).await.unwrap(), 0, "never decoded, not even at upload");

    let ok = upload_image(&fx, &encode(400, 400, ImageFormat::Png), "image/png").await;
    expect_err(fx.thumbnail(&ok, 0, 32, "crop", false).await, ErrorCode::InvalidParam, 400);
    expect_err(fx.thumbnail(&ok, 32, 32, "stretch", false).await, ErrorCode::InvalidParam, 400);
    expect_err(fx.thumbnail("nosuchmedia0000000000000", 32, 32, "crop", false).await, ErrorCode::NotFound, 404);
    assert!(fx.thumbnail(&ok, 32, 32, "crop", false).await.is_ok());
}

trellis_testkit::contract!(setup = trellis_testkit::contract::bare; common_sizes_and_choice, formats_and_animation, refusals);
