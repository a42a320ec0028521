// Videos through FFmpeg (libavformat, libavcodec, libswscale): frames sampled at scene changes and at least every
// `interval` seconds, each handed over as 8-bit RGB with the stream's rotation as an orientation, one frame at a time,
// so memory stays flat however long the video is.
//
// Hostile files: the container is read through the caller's descriptor only (no file names, no protocols: a playlist
// or reference movie cannot make FFmpeg open anything else), only the demuxers of the formats a photo library holds
// are allowed, the frame size is checked against the pixel limit before the decoder opens, and every call runs
// against a deadline that FFmpeg's interrupt callback enforces.
#include "clip_image.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !__has_include(<libavformat/avformat.h>)
// On Linux the headers are found in the compiler's default include path (Debian and Ubuntu keep them in
// /usr/include/<triple>), since FFmpeg is not linked and pkg-config is not asked.
#error "video.c needs FFmpeg's development headers (Debian: apt-get install libavformat-dev libavcodec-dev libswscale-dev); where they live outside the default include path (Fedora: /usr/include/ffmpeg), build with -Xcc -I$(pkg-config --variable=includedir libavformat)"
#endif
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

// On Linux FFmpeg is opened with dlopen when the first video is, not linked: libavformat brings 134 shared libraries
// (its protocols' and codecs'): a do-nothing program linked like `clip` started in 72 ms with them and 34 ms without on
// an Intel Xeon, a cost every `clip` command paid whether or not it ever read a video. The sonames are the ones the headers were built against;
// their symbols are resolved once, each call below going through the table under its own name.
#if defined(__linux__)
#include <dlfcn.h>
#include <pthread.h>

#define FFMPEG_CALLS(X)                                                                                         \
    X(avutil, av_display_rotation_get) X(avutil, av_frame_alloc) X(avutil, av_frame_free)                      \
    X(avutil, av_frame_unref) X(avutil, av_free) X(avutil, av_freep) X(avutil, av_malloc) X(avutil, av_strdup) \
    X(avutil, av_strerror)                                                                                     \
    X(avcodec, av_packet_alloc) X(avcodec, av_packet_free) X(avcodec, av_packet_unref)                         \
    X(avcodec, avcodec_alloc_context3) X(avcodec, avcodec_flush_buffers) X(avcodec, avcodec_free_context)      \
    X(avcodec, avcodec_open2) X(avcodec, avcodec_parameters_to_context) X(avcodec, avcodec_receive_frame)      \
    X(avcodec, avcodec_send_packet)                                                                            \
    X(avformat, av_find_best_stream) X(avformat, av_read_frame) X(avformat, av_seek_frame)                     \
    X(avformat, av_stream_get_side_data) X(avformat, avformat_alloc_context) X(avformat, avformat_close_input)  \
    X(avformat, avformat_find_stream_info) X(avformat, avformat_index_get_entries_count)                       \
    X(avformat, avformat_index_get_entry) X(avformat, avformat_open_input) X(avformat, avio_alloc_context)     \
    X(avformat, avio_context_free)                                                                             \
    X(swscale, sws_freeContext) X(swscale, sws_getCachedContext) X(swscale, sws_scale)

#define FFMPEG_POINTER(lib, name) __typeof__(&name) name;
static struct { FFMPEG_CALLS(FFMPEG_POINTER) } ffmpeg;
static char ffmpeg_error[512];
static pthread_once_t ffmpeg_once = PTHREAD_ONCE_INIT;

static void ffmpeg_load(void) {
    // libavutil first: the others need it. RTLD_LOCAL keeps FFmpeg's symbols out of the global scope.
    static const struct { const char *soname, *package; } libs[] = {
        {"libavutil.so." AV_STRINGIFY(LIBAVUTIL_VERSION_MAJOR), "libavutil" AV_STRINGIFY(LIBAVUTIL_VERSION_MAJOR)},
        {"libswscale.so." AV_STRINGIFY(LIBSWSCALE_VERSION_MAJOR), "libswscale" AV_STRINGIFY(LIBSWSCALE_VERSION_MAJOR)},
        {"libavcodec.so." AV_STRINGIFY(LIBAVCODEC_VERSION_MAJOR), "libavcodec" AV_STRINGIFY(LIBAVCODEC_VERSION_MAJOR)},
        {"libavformat.so." AV_STRINGIFY(LIBAVFORMAT_VERSION_MAJOR), "libavformat" AV_STRINGIFY(LIBAVFORMAT_VERSION_MAJOR)},
    };
    enum { avutil, swscale, avcodec, avformat };  // libs[]' order, so that FFMPEG_CALLS' library names index handle[]
    void *handle[4];
    for (int i = 0; i < 4; i++) {
        handle[i] = dlopen(libs[i].soname, RTLD_NOW | RTLD_LOCAL);
        if (!handle[i]) {
            const char *why = dlerror();
            snprintf(ffmpeg_error, sizeof ffmpeg_error,
                     "videos need FFmpeg's %s, which cannot be loaded (%s); on Debian: apt-get install %s", libs[i].soname,
                     why ? why : "not found", libs[i].package);
            return;
        }
    }
#define FFMPEG_RESOLVE(lib, name)                                                                               \
    if (!(*(void **)&ffmpeg.name = dlsym(handle[lib], #name))) {                                                       \
        snprintf(ffmpeg_error, sizeof ffmpeg_error, "videos need %s from FFmpeg's lib%s, which the installed one lacks", \
                 #name, #lib);                                                                                 \
        return;                                                                                                \
    }
    FFMPEG_CALLS(FFMPEG_RESOLVE)
#undef FFMPEG_RESOLVE
}

// 0 when FFmpeg is there, else the error (the same one on every call: a failed load is not retried).
static int ffmpeg_ready(char *err, size_t errlen) {
    pthread_once(&ffmpeg_once, ffmpeg_load);
    if (!ffmpeg_error[0]) return 0;
    snprintf(err, errlen, "%s", ffmpeg_error);
    return -1;
}

#define av_display_rotation_get ffmpeg.av_display_rotation_get
#define av_frame_alloc ffmpeg.av_frame_alloc
#define av_frame_free ffmpeg.av_frame_free
#define av_frame_unref ffmpeg.av_frame_unref
#define av_free ffmpeg.av_free
#define av_freep ffmpeg.av_freep
#define av_malloc ffmpeg.av_malloc
#define av_strdup ffmpeg.av_strdup
#define av_strerror ffmpeg.av_strerror
#define av_packet_alloc ffmpeg.av_packet_alloc
#define av_packet_free ffmpeg.av_packet_free
#define av_packet_unref ffmpeg.av_packet_unref
#define avcodec_alloc_context3 ffmpeg.avcodec_alloc_context3
#define avcodec_flush_buffers ffmpeg.avcodec_flush_buffers
#define avcodec_free_context ffmpeg.avcodec_free_context
#define avcodec_open2 ffmpeg.avcodec_open2
#define avcodec_parameters_to_context ffmpeg.avcodec_parameters_to_context
#define avcodec_receive_frame ffmpeg.avcodec_receive_frame
#define avcodec_send_packet ffmpeg.avcodec_send_packet
#define av_find_best_stream ffmpeg.av_find_best_stream
#define av_read_frame ffmpeg.av_read_frame
#define av_seek_frame ffmpeg.av_seek_frame
#define av_stream_get_side_data ffmpeg.av_stream_get_side_data
#define avformat_alloc_context ffmpeg.avformat_alloc_context
#define avformat_close_input ffmpeg.avformat_close_input
#define avformat_find_stream_info ffmpeg.avformat_find_stream_info
#define avformat_index_get_entries_count ffmpeg.avformat_index_get_entries_count
#define avformat_index_get_entry ffmpeg.avformat_index_get_entry
#define avformat_open_input ffmpeg.avformat_open_input
#define avio_alloc_context ffmpeg.avio_alloc_context
#define avio_context_free ffmpeg.avio_context_free
#define sws_freeContext ffmpeg.sws_freeContext
#define sws_getCachedContext ffmpeg.sws_getCachedContext
#define sws_scale ffmpeg.sws_scale
#elif defined(__APPLE__)
// On macOS FFmpeg is linked as usual (Package.swift).
static int ffmpeg_ready(char *err, size_t errlen) {
    (void)err; (void)errlen;
    return 0;
}
#else
#error "videos: Package.swift links FFmpeg only on macOS and video.c opens it at run time only on Linux; this platform needs one of the two"
#endif

enum { THUMB = 32, IO_BUFFER = 1 << 16 };

struct clip_video {
    int fd;
    int64_t position, size;
    AVIOContext *io;
    AVFormatContext *format;
    AVCodecContext *codec;
    AVPacket *packet;
    AVFrame *frame;
    struct SwsContext *to_rgb, *to_thumb;
    int stream, orientation, draining, finished;
    double interval, threshold, last_kept, time_base, start;
    int64_t frames_decoded, packets_read, declared_frames;
    double declared_duration, stream_end;   // what the container says; how far the packets read reach
    uint64_t max_pixels;
    double deadline;         // monotonic seconds; 0 = none
    double call_seconds;
    uint8_t last_thumb[THUMB * THUMB], thumb[THUMB * THUMB];
    int have_last;
    double skip_before;      // after a seek: frames before this time are decoded, not kept
    int seeked;              // the frame and duration counts no longer cover the whole stream
    int key_frames_only;     // only key frames are sent to the decoder (see key_frames_cover)
};

// Whether the stream's key frames, as the container's index lists them, are never more than `interval` apart from
// the start to the end: then they alone can carry the sampling. A phone records 30 or 60 frames a second with a key
// frame every second or two; decoding only those is 30–60 times less work, and the frames kept are the same moments
// within a key-frame gap. A cut between key frames is seen at the next one (encoders put one at a cut anyway).
static int key_frames_cover(AVStream *st, double interval, double base, double start, double duration) {
    int n = avformat_index_get_entries_count(st), keys = 0;
    double previous = 0;
    // The index holds decoding times, which run a few frames ahead of display times when there are B-frames.
    interval += 0.1 + 0.05 * interval;
    for (int i = 0; i < n; i++) {
        const AVIndexEntry *e = avformat_index_get_entry(st, i);
        if (!e || !(e->flags & AVINDEX_KEYFRAME) || e->timestamp == AV_NOPTS_VALUE) continue;
        double t = e->timestamp * base - start;
        if (!isfinite(t) || t - previous > interval) return 0;
        previous = t;
        keys++;
    }
    return keys >= 2 && duration > 0 && duration - previous <= interval;
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static int read_packet(void *opaque, uint8_t *buf, int n) {
    clip_video *v = opaque;
    if (v->position >= v->size) return AVERROR_EOF;
    ssize_t got = pread(v->fd, buf, (size_t)n, (off_t)v->position);
    if (got < 0) return AVERROR(errno);
    if (got == 0) return AVERROR_EOF;
    v->position += got;
    return (int)got;
}

static int64_t seek_packet(void *opaque, int64_t offset, int whence) {
    clip_video *v = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return v->size;
    int64_t base = whence == SEEK_CUR ? v->position : whence == SEEK_END ? v->size : 0;
    if (whence != SEEK_SET && whence != SEEK_CUR && whence != SEEK_END) return AVERROR(EINVAL);
    if (base + offset < 0) return AVERROR(EINVAL);
    v->position = base + offset;
    return v->position;
}

static int interrupted(void *opaque) {
    clip_video *v = opaque;
    return v->deadline > 0 && now_seconds() > v->deadline;
}

// Nested opens (playlists, reference movies, image sequences) are refused: one file, the one given.
static int refuse_open(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **options) {
    (void)s; (void)pb; (void)url; (void)flags; (void)options;
    return AVERROR(EPERM);
}

static int av_fail(char *err, size_t errlen, int e, const char *what, clip_video *v) {
    char msg[AV_ERROR_MAX_STRING_SIZE] = {0};
    if (v && interrupted(v)) {
        snprintf(err, errlen, "%s: gave up after %.0f s (the video takes too long to read)", what, v->call_seconds);
        return CLIP_IMAGE_CORRUPT;
    }
    av_strerror(e, msg, sizeof msg);
    snprintf(err, errlen, "%s: %s", what, msg);
    return e == AVERROR(ENOMEM) ? CLIP_IMAGE_NO_MEMORY : e == AVERROR_DECODER_NOT_FOUND || e == AVERROR_PATCHWELCOME
        ? CLIP_IMAGE_UNSUPPORTED : CLIP_IMAGE_CORRUPT;
}

void clip_video_close(clip_video *v) {
    if (!v) return;
    sws_freeContext(v->to_rgb);
    sws_freeContext(v->to_thumb);
    av_frame_free(&v->frame);
    av_packet_free(&v->packet);
    avcodec_free_context(&v->codec);
    if (v->format) avformat_close_input(&v->format);
    if (v->io) {
        av_freep(&v->io->buffer);
        avio_context_free(&v->io);
    }
    free(v);
}

int clip_video_open(int fd, uint64_t max_pixels, double interval, double threshold, double seconds_per_call,
                    int every_frame, clip_video **out, clip_video_info *info, char *err, size_t errlen) {
    *out = NULL;
    memset(info, 0, sizeof *info);
    if (ffmpeg_ready(err, errlen) != 0) return CLIP_IMAGE_UNSUPPORTED;
    clip_video *v = calloc(1, sizeof *v);
    if (!v) { snprintf(err, errlen, "out of memory for the video reader"); return CLIP_IMAGE_NO_MEMORY; }
    struct stat st;
    if (fstat(fd, &st) != 0) { free(v); snprintf(err, errlen, "cannot stat the video"); return CLIP_IMAGE_CORRUPT; }
    v->fd = fd;
    v->size = st.st_size;
    v->max_pixels = max_pixels;
    v->interval = interval > 0 ? interval : 2;
    v->threshold = threshold;
    v->call_seconds = seconds_per_call;
    v->deadline = seconds_per_call > 0 ? now_seconds() + seconds_per_call : 0;
    v->last_kept = -INFINITY;
    int code = CLIP_IMAGE_OK, e;
    uint8_t *buffer = av_malloc(IO_BUFFER);
    v->io = buffer ? avio_alloc_context(buffer, IO_BUFFER, 0, v, read_packet, NULL, seek_packet) : NULL;
    v->format = avformat_alloc_context();
    if (!v->io || !v->format) {
        if (!v->io) av_free(buffer);
        snprintf(err, errlen, "out of memory for the video reader");
        code = CLIP_IMAGE_NO_MEMORY;
        goto fail;
    }
    v->format->pb = v->io;
    v->format->flags |= AVFMT_FLAG_CUSTOM_IO;
    v->format->interrupt_callback.callback = interrupted;
    v->format->interrupt_callback.opaque = v;
    v->format->io_open = refuse_open;
    v->format->format_whitelist = av_strdup("mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi");
    v->format->protocol_whitelist = av_strdup("none");
    // Probing reads at most 5 MB and 5 s of the stream before the first frame.
    v->format->probesize = 5 << 20;
    v->format->max_analyze_duration = 5 * AV_TIME_BASE;
    if ((e = avformat_open_input(&v->format, NULL, NULL, NULL)) < 0) {
        v->format = NULL;  // freed by FFmpeg on failure
        code = av_fail(err, errlen, e, "not a video this build reads (MP4, MOV, MKV, WebM, AVI)", v);
        goto fail;
    }
    if ((e = avformat_find_stream_info(v->format, NULL)) < 0) { code = av_fail(err, errlen, e, "corrupt video", v); goto fail; }
    const AVCodec *decoder = NULL;
    v->stream = av_find_best_stream(v->format, AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
    if (v->stream < 0 || !decoder) {
        code = v->stream == AVERROR_DECODER_NOT_FOUND ? CLIP_IMAGE_UNSUPPORTED : CLIP_IMAGE_CORRUPT;
        snprintf(err, errlen, v->stream == AVERROR_DECODER_NOT_FOUND ? "a video codec this FFmpeg cannot decode"
                                                                     : "the file holds no video stream");
        goto fail;
    }
    AVStream *stream = v->format->streams[v->stream];
    AVCodecParameters *par = stream->codecpar;
    uint64_t npix = (uint64_t)(par->width > 0 ? par->width : 0) * (uint64_t)(par->height > 0 ? par->height : 0);
    if (par->width <= 0 || par->height <= 0) {
        snprintf(err, errlen, "the video declares frames of %dx%d", par->width, par->height);
        code = CLIP_IMAGE_CORRUPT;
        goto fail;
    }
    if (npix > max_pixels) {
        snprintf(err, errlen, "video frames are %dx%d = %llu pixels, more than the limit of %llu", par->width,
                 par->height, (unsigned long long)npix, (unsigned long long)max_pixels);
        code = CLIP_IMAGE_TOO_LARGE;
        goto fail;
    }
    v->codec = avcodec_alloc_context3(decoder);
    if (!v->codec) { snprintf(err, errlen, "out of memory for the decoder"); code = CLIP_IMAGE_NO_MEMORY; goto fail; }
    if ((e = avcodec_parameters_to_context(v->codec, par)) < 0) { code = av_fail(err, errlen, e, "corrupt video", v); goto fail; }
    // One thread: callers decode one file per core already.
    v->codec->thread_count = 1;
    if ((e = avcodec_open2(v->codec, decoder, NULL)) < 0) { code = av_fail(err, errlen, e, "cannot open the video decoder", v); goto fail; }
    v->packet = av_packet_alloc();
    v->frame = av_frame_alloc();
    if (!v->packet || !v->frame) { snprintf(err, errlen, "out of memory for the decoder"); code = CLIP_IMAGE_NO_MEMORY; goto fail; }
    v->time_base = av_q2d(stream->time_base);
    v->declared_frames = stream->nb_frames;
    v->declared_duration = v->format->duration != AV_NOPTS_VALUE ? v->format->duration / (double)AV_TIME_BASE : -1;
    v->start = stream->start_time != AV_NOPTS_VALUE ? stream->start_time * v->time_base : 0;
    if (!every_frame && key_frames_cover(stream, v->interval, v->time_base, v->start, v->declared_duration)) {
        v->key_frames_only = 1;
        v->codec->skip_frame = AVDISCARD_NONKEY;
    }
    // The display matrix's rotation (counter-clockwise degrees), as FFmpeg's autorotate reads it.
    const uint8_t *matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    v->orientation = 1;
    if (matrix) {
        double theta = -av_display_rotation_get((const int32_t *)matrix);
        theta -= 360 * floor(theta / 360 + 0.9 / 360);
        if (fabs(theta - 90) < 1) v->orientation = 6;
        else if (fabs(theta - 180) < 1) v->orientation = 3;
        else if (fabs(theta - 270) < 1) v->orientation = 8;
    }
    info->width = par->width;
    info->height = par->height;
    info->orientation = v->orientation;
    info->duration = v->format->duration != AV_NOPTS_VALUE ? v->format->duration / (double)AV_TIME_BASE : -1;
    info->key_frames_only = v->key_frames_only;
    snprintf(info->codec, sizeof info->codec, "%s", decoder->name);
    *out = v;
    return CLIP_IMAGE_OK;
fail:
    clip_video_close(v);
    return code;
}

// The mean absolute difference of two 32×32 gray thumbnails, 0–255.
static double difference(const uint8_t *a, const uint8_t *b) {
    long sum = 0;
    for (int i = 0; i < THUMB * THUMB; i++) sum += abs((int)a[i] - (int)b[i]);
    return (double)sum / (THUMB * THUMB);
}

// Converts the current frame to RGB into `out` (malloc'd pixels).
static int emit(clip_video *v, clip_image *out, char *err, size_t errlen) {
    AVFrame *f = v->frame;
    if ((uint64_t)f->width * (uint64_t)f->height > v->max_pixels || f->width <= 0 || f->height <= 0) {
        snprintf(err, errlen, "a video frame of %dx%d is past the pixel limit", f->width, f->height);
        return CLIP_IMAGE_TOO_LARGE;
    }
    v->to_rgb = sws_getCachedContext(v->to_rgb, f->width, f->height, f->format, f->width, f->height, AV_PIX_FMT_RGB24,
                                     SWS_BICUBIC, NULL, NULL, NULL);
    if (!v->to_rgb) { snprintf(err, errlen, "cannot convert video frames of pixel format %d to RGB", f->format); return CLIP_IMAGE_UNSUPPORTED; }
    size_t row = (size_t)f->width * 3;
    uint8_t *pixels = clip_image_pixels(out, row * (size_t)f->height);
    if (!pixels) { snprintf(err, errlen, "out of memory for a %dx%d frame", f->width, f->height); return CLIP_IMAGE_NO_MEMORY; }
    uint8_t *planes[4] = {pixels, NULL, NULL, NULL};
    int strides[4] = {(int)row, 0, 0, 0};
    sws_scale(v->to_rgb, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
    out->pixels = pixels;
    out->width = f->width;
    out->height = f->height;
    out->channels = 3;
    out->mode = CLIP_MODE_RGB;
    out->orientation = v->orientation;
    return CLIP_IMAGE_OK;
}

// Whether the decoded frame at time `t` is kept: the first, one due by the interval, or a scene change.
static int keep(clip_video *v, double t) {
    AVFrame *f = v->frame;
    v->to_thumb = sws_getCachedContext(v->to_thumb, f->width, f->height, f->format, THUMB, THUMB, AV_PIX_FMT_GRAY8,
                                       SWS_AREA, NULL, NULL, NULL);
    int scene = 0;
    if (v->to_thumb) {
        uint8_t *planes[4] = {v->thumb, NULL, NULL, NULL};
        int strides[4] = {THUMB, 0, 0, 0};
        sws_scale(v->to_thumb, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
        // A cut: the picture differs from the last kept one by more than the threshold (and a quarter second passed).
        scene = v->have_last && v->threshold > 0 && t >= v->last_kept + 0.25 && difference(v->thumb, v->last_thumb) > v->threshold;
    }
    if (!v->have_last || t >= v->last_kept + v->interval - 1e-6 || scene) {
        memcpy(v->last_thumb, v->thumb, sizeof v->thumb);
        v->have_last = 1;
        v->last_kept = t;
        return 1;
    }
    return 0;
}

int clip_video_next(clip_video *v, clip_image *out, double *timestamp, char *err, size_t errlen) {
    clip_image_reset(out);
    v->deadline = v->call_seconds > 0 ? now_seconds() + v->call_seconds : 0;
    int e;
    while (!v->finished) {
        e = avcodec_receive_frame(v->codec, v->frame);
        if (e == 0) {
            v->frames_decoded++;
            int64_t pts = v->frame->best_effort_timestamp;
            double t = pts != AV_NOPTS_VALUE ? pts * v->time_base - v->start : v->last_kept + v->interval;
            if (t < 0) t = 0;
            // A millisecond of slack: the time asked for may have been stored as a float or rounded.
            int kept = t >= v->skip_before - 1e-3 && keep(v, t);
            if (kept) {
                int code = emit(v, out, err, errlen);
                av_frame_unref(v->frame);
                if (code != CLIP_IMAGE_OK) { clip_image_free(out); return -code; }
                *timestamp = t;
                return 1;
            }
            av_frame_unref(v->frame);
            if (interrupted(v)) return -av_fail(err, errlen, AVERROR_EXIT, "reading the video", v);
            continue;
        }
        if (e == AVERROR_EOF) { v->finished = 1; break; }
        if (e != AVERROR(EAGAIN)) return -av_fail(err, errlen, e, "corrupt video frame", v);
        if (v->draining) { v->finished = 1; break; }
        // The decoder wants input: the next packet of the video stream, or the end.
        for (;;) {
            e = av_read_frame(v->format, v->packet);
            if (e == AVERROR_EOF) {
                // The container said how many frames or how long: a stream that ends short of it is cut off (the
                // demuxers stop quietly at a sample past the end of the file).
                double reached = v->stream_end - v->start;
                if (!v->seeked && v->declared_frames > 0 && v->packets_read < v->declared_frames) {
                    snprintf(err, errlen, "truncated video: the data ends after %lld of its %lld frames (%.1f s)",
                             (long long)v->packets_read, (long long)v->declared_frames, reached > 0 ? reached : 0);
                    return -CLIP_IMAGE_CORRUPT;
                }
                if (!v->seeked && v->declared_frames <= 0 && v->declared_duration > 0 &&
                    reached < v->declared_duration - 1.0 - 0.05 * v->declared_duration) {
                    snprintf(err, errlen, "truncated video: the data ends at %.1f s of its %.1f s", reached > 0 ? reached : 0,
                             v->declared_duration);
                    return -CLIP_IMAGE_CORRUPT;
                }
                v->draining = 1;
                if ((e = avcodec_send_packet(v->codec, NULL)) < 0 && e != AVERROR_EOF)
                    return -av_fail(err, errlen, e, "corrupt video", v);
                break;
            }
            if (e < 0) return -av_fail(err, errlen, e, "corrupt or truncated video", v);
            if (v->packet->stream_index != v->stream) { av_packet_unref(v->packet); continue; }
            AVPacket *p = v->packet;
            int skipped = v->key_frames_only && !(p->flags & AV_PKT_FLAG_KEY);
            double at = p->pts != AV_NOPTS_VALUE ? p->pts * v->time_base : p->dts != AV_NOPTS_VALUE ? p->dts * v->time_base : v->stream_end;
            v->packets_read++;
            if (at + p->duration * v->time_base > v->stream_end) v->stream_end = at + p->duration * v->time_base;
            // A packet the demuxer could read only in part: the file is cut or damaged there. (Players skip such
            // packets and go on; an index must not take a video with holes for the whole one.)
            if (p->flags & AV_PKT_FLAG_CORRUPT) {
                av_packet_unref(p);
                snprintf(err, errlen, "corrupt or truncated video data at %.1f s", at - v->start > 0 ? at - v->start : 0);
                return -CLIP_IMAGE_CORRUPT;
            }
            // Read (the truncation checks count it) but not decoded.
            if (skipped) { av_packet_unref(p); continue; }
            e = avcodec_send_packet(v->codec, p);
            av_packet_unref(p);
            if (e < 0 && e != AVERROR(EAGAIN)) {
                char what[64];
                snprintf(what, sizeof what, "corrupt video data at %.1f s", at - v->start > 0 ? at - v->start : 0);
                return -av_fail(err, errlen, e, what, v);
            }
            break;
        }
    }
    return 0;
}

int clip_video_seek(clip_video *v, double t, char *err, size_t errlen) {
    v->deadline = v->call_seconds > 0 ? now_seconds() + v->call_seconds : 0;
    if (!(t >= 0) || !isfinite(t)) { snprintf(err, errlen, "a video time must be a number of seconds >= 0"); return CLIP_IMAGE_UNSUPPORTED; }
    AVStream *st = v->format->streams[v->stream];
    double base = av_q2d(st->time_base);
    if (!(base > 0)) { snprintf(err, errlen, "the video stream has no time base to seek by"); return CLIP_IMAGE_UNSUPPORTED; }
    double ticks = (t + v->start) / base;
    if (ticks > 9e18) ticks = 9e18;
    // To the key frame at or before the time; the frames from there up to it are decoded and dropped.
    int e = av_seek_frame(v->format, v->stream, (int64_t)ticks, AVSEEK_FLAG_BACKWARD);
    if (e < 0) return av_fail(err, errlen, e, "cannot seek in the video", v);
    avcodec_flush_buffers(v->codec);
    v->finished = v->draining = v->have_last = 0;
    v->skip_before = t;
    v->seeked = 1;
    return CLIP_IMAGE_OK;
}
