#include <nghttp2/nghttp2.h>
#include <stdint.h>

// Field access on nghttp2's frame union, which Swift imports awkwardly.
static inline uint8_t cng_frame_type(const nghttp2_frame *frame) { return frame->hd.type; }
static inline uint8_t cng_frame_flags(const nghttp2_frame *frame) { return frame->hd.flags; }
static inline int32_t cng_frame_stream_id(const nghttp2_frame *frame) { return frame->hd.stream_id; }
static inline int cng_headers_category(const nghttp2_frame *frame) { return (int)frame->headers.cat; }

// A header field pointing at caller-owned bytes (copied by nghttp2's submit functions).
static inline nghttp2_nv cng_nv(const uint8_t *name, size_t name_length, const uint8_t *value, size_t value_length) {
    nghttp2_nv nv;
    nv.name = (uint8_t *)name;
    nv.value = (uint8_t *)value;
    nv.namelen = name_length;
    nv.valuelen = value_length;
    nv.flags = NGHTTP2_NV_FLAG_NONE;
    return nv;
}
