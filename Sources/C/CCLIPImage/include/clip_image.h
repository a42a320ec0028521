#ifndef CLIP_IMAGE_H
#define CLIP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Pixel layouts, named after the Pillow modes the reference pipeline works in.
enum {
    CLIP_MODE_L = 1,     // 8-bit gray
    CLIP_MODE_LA = 2,    // gray + alpha
    CLIP_MODE_RGB = 3,
    CLIP_MODE_RGBA = 4,
    CLIP_MODE_CMYK = 5,  // as Pillow holds Adobe JPEGs (inverted on read)
    CLIP_MODE_P = 6,     // palette indices, `palette` holds RGB triples
    CLIP_MODE_1 = 7,     // bilevel, stored as 0 / 255
    CLIP_MODE_I16 = 8,   // 16-bit gray ("I;16"), native-endian uint16 samples (channels = 2 bytes)
};

/// A decoded image: `width * height * channels` bytes, rows top to bottom, channels interleaved.
///
/// The caller may set `buffer` and `buffer_capacity` before decoding: when large enough, the pixels are decoded
/// straight into it (`owns_pixels` 0), so a huge image is never held twice; otherwise they are malloc'd
/// (`owns_pixels` 1) and `clip_image_free` frees them.
typedef struct {
    int32_t width, height, channels, mode;
    uint8_t *pixels;
    uint8_t *buffer;
    size_t buffer_capacity;
    int32_t owns_pixels;
    int32_t palette_size;
    uint8_t palette[768];
    uint8_t *exif;  // TIFF-structured EXIF block when the file has one, else NULL
    size_t exif_size;
    int32_t orientation;  // a turn the caller applies whatever its own orientation setting: TIFF's Orientation tag
                          // (Pillow applies it as it loads), a camera RAW preview's (as every RAW viewer does)
    int32_t xmp_orientation;  // XMP's tiff:Orientation digit (Pillow's fallback when EXIF has none), -1 when absent
} clip_image;

/// Result codes. On failure `err` holds a message (NUL-terminated, at most `errlen` bytes).
enum { CLIP_IMAGE_OK = 0, CLIP_IMAGE_CORRUPT = 1, CLIP_IMAGE_TOO_LARGE = 2, CLIP_IMAGE_NO_MEMORY = 3, CLIP_IMAGE_UNSUPPORTED = 4 };

/// Decoders. Each checks the declared size against `max_pixels` before allocating pixel memory and treats a
/// truncated stream as an error (never fills missing pixels).
int clip_decode_jpeg(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
int clip_decode_png(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
int clip_decode_webp(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
/// HEIF/HEIC and AVIF (libheif): the primary image with its rotation and mirroring applied, RGB or RGBA, 8-bit.
int clip_decode_heif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
/// Width and height of a HEIF file's primary image as decoded (rotation applied), from its boxes alone.
int clip_heif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// AVIF (libavif): the first image as stored, RGB or RGBA, 8-bit; irot/imir reported as an EXIF orientation.
int clip_decode_avif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
int clip_avif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// Whether an ISO-media file is AVIF (major brand avif/avis, or a general one listing AVIF and not HEIC): libavif's.
int clip_isobmff_is_avif(const uint8_t *data, size_t size);
/// An AVIF file's size and orientation (as `exif`) from its boxes, without decoding (0, or -1 when unreadable).
int clip_avif_header(const uint8_t *data, size_t size, clip_image *out);
/// GIF (giflib): the first frame on the logical screen, as palette indices ("P") or gray ("L") as Pillow opens it.
int clip_decode_gif(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
int clip_gif_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// BMP (read here, as Pillow's BmpImagePlugin reads it): palette, gray, bilevel, RGB or RGBA; RLE4/RLE8 included.
int clip_decode_bmp(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
int clip_bmp_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// TIFF (libtiff): the first page in Pillow's mode for its layout; `orientation` set from the tag, not applied.
int clip_decode_tiff(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
/// A TIFF's first page's size as shown (turned by its Orientation tag, as Pillow reports it).
int clip_tiff_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// Camera RAW (LibRaw): the embedded JPEG preview when it is at least half the photo's size, else the demosaiced
/// sensor data (turned by LibRaw); a preview's turn is set in `orientation`.
int clip_decode_raw(const uint8_t *data, size_t size, uint64_t max_pixels, clip_image *out, char *err, size_t errlen);
/// A camera RAW file's size as shown (the preview's, or the demosaiced image's, turned).
int clip_raw_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);
/// Whether the bytes are a camera RAW file (by signature, and for TIFF-structured ones by their first IFD).
int clip_is_camera_raw(const uint8_t *data, size_t size);
/// Videos (FFmpeg): frames at scene changes and at least every `interval` seconds, 8-bit RGB with the stream's
/// rotation in `orientation`. Opened over `fd` (a regular file the caller keeps open), each call bounded by
/// `seconds_per_call` (0: none). Unless `every_frame`, a stream whose key frames are at most `interval` apart is
/// sampled at its key frames alone (only they are decoded). `threshold`: the mean absolute difference (0–255) of 32×32 gray thumbnails that counts
/// as a scene change (0: none).
typedef struct clip_video clip_video;
typedef struct {
    int32_t width, height, orientation;
    double duration;  // seconds, or -1 when the container does not say
    int32_t key_frames_only;  // the key frames, never more than `interval` apart, alone are decoded
    char codec[32];
} clip_video_info;
int clip_video_open(int fd, uint64_t max_pixels, double interval, double threshold, double seconds_per_call,
                    int every_frame, clip_video **out, clip_video_info *info, char *err, size_t errlen);
/// 1 and a frame (pixels malloc'd or in the caller's buffer, free with clip_image_free) with its time in seconds;
/// 0 at the end; a negated CLIP_IMAGE_* code with `err` set on failure.
int clip_video_next(clip_video *v, clip_image *out, double *timestamp, char *err, size_t errlen);
// Positions the reader so that the next frame returned is the first at or after `t` seconds (then sampled as usual
// from there). Returns CLIP_IMAGE_OK or an error code with `err` filled.
int clip_video_seek(clip_video *v, double t, char *err, size_t errlen);
void clip_video_close(clip_video *v);
void clip_image_free(clip_image *img);

/// PNG in two steps, for images too large to hold decoded: `clip_png_open` reads the header and sets `out`'s
/// width, height, channels, mode, palette and EXIF (no pixels), then `clip_png_read_rows` decodes every row in
/// order and hands the rows the resampler needs to it (non-interlaced files only: `clip_png_streamable`). Errors as
/// for `clip_decode_png`; `clip_png_close` frees the stream (NULL is allowed).
/// Encodes 8-bit RGB rows [height, width, 3] as a PNG in memory. On success *out (free it) holds *out_size bytes.
int clip_encode_png(const uint8_t *rgb, int width, int height, uint8_t **out, size_t *out_size, char *err,
                    size_t errlen);
// 8-bit RGB [height][width][3] -> a baseline JPEG at `quality` (1-100, 4:2:0 chroma as libjpeg's default), in
// malloc'd *out (the caller frees it). Returns 0, or non-zero with err set.
int clip_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, uint8_t **out, size_t *out_size, char *err,
                     size_t errlen);

typedef struct clip_png_stream clip_png_stream;
struct clip_resampler;
int clip_png_open(const uint8_t *data, size_t size, uint64_t max_pixels, clip_png_stream **stream, clip_image *out,
                  char *err, size_t errlen);
int clip_png_streamable(const clip_png_stream *stream);
int clip_png_read_rows(clip_png_stream *stream, struct clip_resampler *resampler, char *err, size_t errlen);
void clip_png_close(clip_png_stream *stream);

/// JPEG in the same two steps (every JPEG can be read row by row; CMYK rows arrive inverted as Pillow holds them).
typedef struct clip_jpeg_stream clip_jpeg_stream;
int clip_jpeg_open(const uint8_t *data, size_t size, uint64_t max_pixels, clip_jpeg_stream **stream, clip_image *out,
                   char *err, size_t errlen);
int clip_jpeg_read_rows(clip_jpeg_stream *stream, struct clip_resampler *resampler, char *err, size_t errlen);
void clip_jpeg_close(clip_jpeg_stream *stream);

/// For decoders: clears `img` except the caller's buffer, and returns pixel memory of `bytes` (the caller's buffer
/// when it is large enough, else malloc; NULL without memory). `clip_image_drop_pixels` undoes it on failure.
void clip_image_reset(clip_image *img);
/// The digit after the first `tiff:Orientation="` or `tiff:Orientation>` in an XMP packet (Pillow's reading), or -1.
int clip_xmp_orientation(const uint8_t *xmp, size_t size);
/// A PNG's metadata wherever its chunks are, the last of each as Pillow keeps it: the eXIf chunk (after the image
/// data too, where Pillow finds it on load) into `exif`, and an uncompressed iTXt XML:com.adobe.xmp's orientation.
void clip_png_metadata(const uint8_t *data, size_t size, clip_image *out);
/// A WebP file's EXIF chunk (without an `Exif\0\0` prefix) into `exif` and its XMP chunk's orientation; 0, or -1
/// when the file is not a readable WebP.
int clip_webp_metadata(const uint8_t *data, size_t size, clip_image *out);
uint8_t *clip_image_pixels(clip_image *img, size_t bytes);
void clip_image_drop_pixels(clip_image *img, uint8_t *pixels);

/// Width and height from an image header (any format the decoders read, camera RAW included) without decoding (0 on success, -1 when unknown).
int clip_image_probe(const uint8_t *data, size_t size, uint32_t *width, uint32_t *height);

/// Pillow's resampling filters: BICUBIC (a = -0.5, support 2) and BILINEAR (a triangle, support 1).
enum { CLIP_FILTER_BICUBIC = 0, CLIP_FILTER_BILINEAR = 1 };

/// Pillow's separable resampling (ImagingResample, 8 bits per channel) with `filter` (a CLIP_FILTER_*):
/// horizontal pass over the rows the vertical pass needs, rounded to 8 bits, then the vertical pass. `src` is
/// `sw * sh * channels` bytes. Returns 0, or -1 without memory. It computes only the window [wx, wx + ww) × [wy, wy + wh) of the `dw × dh` result
/// (every output pixel depends only on the source, so the window equals that part of the full result).
/// With `premultiply`, the last channel is alpha and the colour channels are premultiplied by it as each source row
/// is read (Pillow resizes RGBA as RGBa), without a premultiplied copy of the image.
/// `dst` receives `ww * wh * channels` bytes.
int clip_resample_window(const uint8_t *src, int sw, int sh, int channels, int dw, int dh, int wx, int wy,
                         int ww, int wh, int premultiply, int filter, uint8_t *dst);

/// The same resampling fed one source row at a time, for decoders that produce rows in order: only the window's
/// horizontally resampled rows are kept (`ww * row_count * channels` bytes), never the whole image.
/// `clip_resampler_new` returns NULL without memory or for empty sizes; feed exactly `row_count` rows, the source's
/// rows `first_row`, `first_row + 1`, … (each `sw * channels` bytes), then `finish` writes `ww * wh * channels`
/// bytes to `dst` (0, or -1 when rows are missing). The result is bitwise that of `clip_resample_window`.
typedef struct clip_resampler clip_resampler;
clip_resampler *clip_resampler_new(int sw, int sh, int channels, int dw, int dh, int wx, int wy, int ww, int wh,
                                   int premultiply, int filter);
int clip_resampler_first_row(const clip_resampler *r);
int clip_resampler_row_count(const clip_resampler *r);
/// The bytes the resampler holds (its stored rows and one whole-width row).
size_t clip_resampler_bytes(const clip_resampler *r);
void clip_resampler_push(clip_resampler *r, const uint8_t *row);
int clip_resampler_finish(clip_resampler *r, uint8_t *dst);
void clip_resampler_free(clip_resampler *r);

/// Pillow's 16-bit resampling (ImagingResample*_16bpc) for "I;16" images: double-precision weights and sums,
/// each stored sample rounded and clipped byte by byte as Pillow does. Window as above, in samples.
int clip_resample16_window(const uint16_t *src, int sw, int sh, int dw, int dh, int wx, int wy, int ww, int wh,
                           int filter, uint16_t *dst);

/// Pillow's NEAREST resize (ImagingScaleAffine with its double-precision stepping).
void clip_resize_nearest(const uint8_t *src, int sw, int sh, int channels, uint8_t *dst, int dw, int dh);

#ifdef __cplusplus
}
#endif

#endif
