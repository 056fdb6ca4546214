//! Image work, synchronous (callers run it on the blocking pool): reading an image's size
//! from its header, and decoding (within a pixel budget) then resizing and encoding
//! thumbnails. JPEG, PNG, GIF and WebP in; JPEG (from JPEG) or PNG out, or an animated GIF
//! for animated GIF and WebP when asked.

use std::io::Cursor;

use image::{
    AnimationDecoder, DynamicImage, Frame, ImageDecoder, ImageFormat, ImageReader, Limits, RgbaImage,
    codecs::{gif::GifDecoder, webp::WebPDecoder},
    imageops::FilterType,
};
use trellis_core::{Error, ErrorCode, Result};

use crate::db::thumbnails::ThumbKey;

/// A finished thumbnail.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub data: Vec<u8>,
    pub content_type: &'static str,
}

pub(crate) fn cannot_thumbnail() -> Error {
    Error::new(ErrorCode::Unknown, "Cannot generate thumbnails for the requested content").with_status(400)
}

pub(crate) fn too_big_to_thumbnail() -> Error {
    Error::too_large("Content is too large to thumbnail")
}

/// The formats we decode.
fn format_of(data: &[u8]) -> Option<ImageFormat> {
    match image::guess_format(data).ok()? {
        f @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) => Some(f),
        _ => None,
    }
}

/// Width and height from the header of an image in a format we decode.
pub(crate) fn probe(reader: ImageReader<impl std::io::BufRead + std::io::Seek>) -> Option<(u32, u32)> {
    let reader = reader.with_guessed_format().ok()?;
    if !matches!(reader.format()?, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP) {
        return None;
    }
    reader.into_dimensions().ok()
}

/// Size of the thumbnail `key` of a `w`×`h` image: `scale` fits the image inside the box,
/// `crop` fills the box's aspect ratio; neither ever upscales.
pub(crate) fn target_size(w: u32, h: u32, key: ThumbKey) -> (u32, u32) {
    let (bw, bh) = (u64::from(key.width.max(1)), u64::from(key.height.max(1)));
    let (w64, h64) = (u64::from(w.max(1)), u64::from(h.max(1)));
    let clamp = |v: u64| u32::try_from(v.max(1)).unwrap_or(u32::MAX);
    if key.crop {
        // The box, shrunk (keeping its aspect) until it fits inside the image.
        if bw <= w64 && bh <= h64 {
            (clamp(bw), clamp(bh))
        } else if bw * h64 > bh * w64 {
            (clamp(w64), clamp(bh * w64 / bw))
        } else {
            (clamp(bw * h64 / bh), clamp(h64))
        }
    } else if w64 <= bw && h64 <= bh {
        (w, h)
    } else if bw * h64 < bh * w64 {
        (clamp(bw), clamp(bw * h64 / w64))
    } else {
        (clamp(bh * w64 / h64), clamp(bh))
    }
}

/// One frame (or a still image) resized to `key`.
fn resize(img: &DynamicImage, key: ThumbKey) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    let (tw, th) = target_size(w, h, key);
    if (tw, th) == (w, h) {
        return img.clone();
    }
    if key.crop {
        // Cut the middle of the image to the box's aspect ratio, then shrink it.
        let (tw64, th64) = (u64::from(tw), u64::from(th));
        let (cw, ch) = if u64::from(w) * th64 > u64::from(h) * tw64 {
            (u32::try_from(u64::from(h) * tw64 / th64).unwrap_or(w).max(1), h)
        } else {
            (w, u32::try_from(u64::from(w) * th64 / tw64).unwrap_or(h).max(1))
        };
        img.crop_imm((w - cw) / 2, (h - ch) / 2, cw, ch).resize_exact(tw, th, FilterType::Triangle)
    } else {
        img.resize_exact(tw, th, FilterType::Triangle)
    }
}

fn limits(w: u32, h: u32, max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(64 * 1024 * 1024));
    limits
}

/// Decodes `data` once and renders each of `keys`. Refuses images over `max_pixels` before
/// decoding them.
pub(crate) fn render(data: &[u8], keys: &[ThumbKey], max_pixels: u64) -> Result<Vec<Rendered>> {
    let format = format_of(data).ok_or_else(cannot_thumbnail)?;
    let reader = ImageReader::with_format(Cursor::new(data), format);
    let (w, h) = reader.into_dimensions().map_err(|_| cannot_thumbnail())?;
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(too_big_to_thumbnail());
    }
    let mut still: Option<DynamicImage> = None;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if key.animated
            && matches!(format, ImageFormat::Gif | ImageFormat::WebP)
            && let Some(anim) = render_animated(data, format, *key, w, h, max_pixels)?
        {
            out.push(anim);
            continue;
        }
        if still.is_none() {
            let mut reader = ImageReader::with_format(Cursor::new(data), format);
            reader.limits(limits(w, h, max_pixels));
            still = Some(reader.decode().map_err(|_| cannot_thumbnail())?);
        }
        let img = resize(still.as_ref().expect("decoded above"), *key);
        out.push(encode_still(&img, format)?);
    }
    Ok(out)
}

fn encode_still(img: &DynamicImage, source: ImageFormat) -> Result<Rendered> {
    let mut buf = Cursor::new(Vec::new());
    let content_type = if source == ImageFormat::Jpeg {
        let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 80).encode_image(&rgb).map_err(Error::internal)?;
        "image/jpeg"
    } else {
        img.write_to(&mut buf, ImageFormat::Png).map_err(Error::internal)?;
        "image/png"
    };
    Ok(Rendered { data: buf.into_inner(), content_type })
}

/// An animated GIF of every frame resized, or `None` if the image is not animated or its
/// frames together pass the pixel budget (a still thumbnail is then made instead).
fn render_animated(
    data: &[u8],
    format: ImageFormat,
    key: ThumbKey,
    w: u32,
    h: u32,
    max_pixels: u64,
) -> Result<Option<Rendered>> {
    let frames = match format {
        ImageFormat::Gif => {
            let mut d = GifDecoder::new(Cursor::new(data)).map_err(|_| cannot_thumbnail())?;
            d.set_limits(limits(w, h, max_pixels)).map_err(|_| cannot_thumbnail())?;
            d.into_frames()
        }
        ImageFormat::WebP => {
            let mut d = WebPDecoder::new(Cursor::new(data)).map_err(|_| cannot_thumbnail())?;
            if !d.has_animation() {
                return Ok(None);
            }
            d.set_limits(limits(w, h, max_pixels)).map_err(|_| cannot_thumbnail())?;
            d.into_frames()
        }
        _ => return Ok(None),
    };
    let mut budget = max_pixels;
    let mut resized = Vec::new();
    for frame in frames {
        let frame = frame.map_err(|_| cannot_thumbnail())?;
        let pixels = u64::from(w) * u64::from(h);
        if pixels > budget {
            return Ok(None);
        }
        budget -= pixels;
        let delay = frame.delay();
        let img = resize(&DynamicImage::ImageRgba8(frame.into_buffer()), key);
        let buffer: RgbaImage = img.to_rgba8();
        resized.push(Frame::from_parts(buffer, 0, 0, delay));
    }
    if resized.len() < 2 {
        return Ok(None);
    }
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 10);
        enc.set_repeat(image::codecs::gif::Repeat::Infinite).map_err(Error::internal)?;
        enc.encode_frames(resized).map_err(Error::internal)?;
    }
    Ok(Some(Rendered { data: out, content_type: "image/gif" }))
}

#[cfg(test)]
pub(crate) mod tests {
    use image::{ImageEncoder, Rgba};

    use super::*;

    /// A `w`×`h` test image in `format` (a gradient, so resizing has something to do).
    pub(crate) fn sample(w: u32, h: u32, format: ImageFormat) -> Vec<u8> {
        let img = RgbaImage::from_fn(w, h, |x, y| Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255]));
        let mut buf = Cursor::new(Vec::new());
        match format {
            ImageFormat::Jpeg => {
                let rgb = DynamicImage::ImageRgba8(img).to_rgb8();
                image::codecs::jpeg::JpegEncoder::new(&mut buf)
                    .write_image(&rgb, w, h, image::ExtendedColorType::Rgb8)
                    .unwrap();
            }
            f => DynamicImage::ImageRgba8(img).write_to(&mut buf, f).unwrap(),
        }
        buf.into_inner()
    }

    /// An animated GIF of `frames` frames.
    pub(crate) fn animated_gif(w: u32, h: u32, frames: u32) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = image::codecs::gif::GifEncoder::new(&mut out);
            let frames = (0..frames).map(|i| {
                Frame::new(RgbaImage::from_fn(w, h, move |x, _| Rgba([((x + i * 40) % 256) as u8, 0, 0, 255])))
            });
            enc.encode_frames(frames).unwrap();
        }
        out
    }

    fn key(width: u32, height: u32, crop: bool) -> ThumbKey {
        ThumbKey { width, height, crop, animated: false }
    }

    fn dims(r: &Rendered) -> (u32, u32) {
        probe(ImageReader::new(Cursor::new(&r.data))).unwrap()
    }

    #[test]
    fn sizes() {
        assert_eq!(target_size(1000, 500, key(320, 240, false)), (320, 160));
        assert_eq!(target_size(500, 1000, key(320, 240, false)), (120, 240));
        assert_eq!(target_size(100, 50, key(320, 240, false)), (100, 50), "never upscaled");
        assert_eq!(target_size(1000, 500, key(96, 96, true)), (96, 96));
        assert_eq!(target_size(50, 500, key(96, 96, true)), (50, 50), "crop keeps the box's aspect");
        assert_eq!(target_size(40, 30, key(96, 96, true)), (30, 30));
        assert_eq!(target_size(1, 10_000, key(32, 32, false)), (1, 32));
    }

    #[test]
    fn renders_each_format() {
        for (format, want) in [
            (ImageFormat::Jpeg, "image/jpeg"),
            (ImageFormat::Png, "image/png"),
            (ImageFormat::Gif, "image/png"),
            (ImageFormat::WebP, "image/png"),
        ] {
            let data = sample(400, 300, format);
            let out = render(&data, &[key(32, 32, true), key(320, 240, false), key(100, 50, true)], 1_000_000).unwrap();
            assert_eq!(out.len(), 3);
            assert!(out.iter().all(|r| r.content_type == want), "{format:?}");
            assert_eq!(dims(&out[0]), (32, 32), "{format:?}");
            assert_eq!(dims(&out[1]), (320, 240), "{format:?}");
            assert_eq!(dims(&out[2]), (100, 50), "{format:?}");
        }
    }

    #[test]
    fn refuses_big_images_and_non_images() {
        let data = sample(300, 200, ImageFormat::Png);
        assert_eq!(render(&data, &[key(32, 32, true)], 59_999).unwrap_err().code(), ErrorCode::TooLarge);
        assert!(render(&data, &[key(32, 32, true)], 60_000).is_ok());
        let err = render(b"<html>hello</html>", &[key(32, 32, true)], 1 << 30).unwrap_err();
        assert_eq!((err.code(), err.status()), (ErrorCode::Unknown, 400));
        let bmp = {
            let mut buf = Cursor::new(Vec::new());
            DynamicImage::new_rgb8(4, 4).write_to(&mut buf, ImageFormat::Bmp).ok();
            buf.into_inner()
        };
        assert!(render(&bmp, &[key(2, 2, true)], 1 << 30).is_err(), "only the four formats");
    }

    #[test]
    fn animated_gif_stays_animated_when_asked() {
        let data = animated_gif(200, 100, 3);
        let anim = ThumbKey { width: 50, height: 50, crop: true, animated: true };
        let out = render(&data, &[anim, key(50, 50, true)], 1_000_000).unwrap();
        assert_eq!(out[0].content_type, "image/gif");
        let frames = GifDecoder::new(Cursor::new(&out[0].data)).unwrap().into_frames().count();
        assert_eq!(frames, 3);
        assert_eq!(dims(&out[0]), (50, 50));
        assert_eq!(out[1].content_type, "image/png", "animated=false gives a still");
        // Over the budget across frames: a still instead.
        let out = render(&data, &[anim], 40_000).unwrap();
        assert_eq!(out[0].content_type, "image/png");
        // A still GIF asked for animation: a still.
        let still = sample(200, 100, ImageFormat::Gif);
        assert_eq!(render(&still, &[anim], 1_000_000).unwrap()[0].content_type, "image/png");
    }
}
