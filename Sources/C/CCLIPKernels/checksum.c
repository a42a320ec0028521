// A 64-bit checksum of a packed-weight cache file's arrays, verified at every load: it must catch a flipped bit or a
// zeroed page at close to memory speed, since a load maps hundreds of MB and has a budget of tens of milliseconds.
// Not cryptographic (whoever can write the cache can write the checkpoint too). Four independent lanes of
// multiply-xorshift over 8-byte words keep the multiplier busy; the tail and the length are mixed in last, so a
// truncated or extended array differs too. Words are read in the machine's byte order: cache files are per machine.
#include "CCLIPKernels.h"
#include <string.h>

static inline uint64_t mix(uint64_t h) {
    h ^= h >> 31;
    h *= 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    return h;
}

uint64_t clip_checksum64(const void *data, size_t bytes, uint64_t seed) {
    const unsigned char *p = (const unsigned char *)data;
    uint64_t a = seed ^ 0x243F6A8885A308D3ull, b = seed ^ 0x13198A2E03707344ull;
    uint64_t c = seed ^ 0xA4093822299F31D0ull, d = seed ^ 0x082EFA98EC4E6C89ull;
    const uint64_t k1 = 0xFF51AFD7ED558CCDull, k2 = 0xC4CEB9FE1A85EC53ull;
    size_t i = 0;
    for (; i + 32 <= bytes; i += 32) {
        uint64_t w[4];
        memcpy(w, p + i, 32);
        a = (a ^ w[0]) * k1; a ^= a >> 32;
        b = (b ^ w[1]) * k2; b ^= b >> 32;
        c = (c ^ w[2]) * k1; c ^= c >> 32;
        d = (d ^ w[3]) * k2; d ^= d >> 32;
    }
    for (; i + 8 <= bytes; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        a = mix(a ^ w);
    }
    uint64_t last = 0;
    if (bytes > i) memcpy(&last, p + i, bytes - i);
    a = mix(a ^ last);
    uint64_t h = mix(a) ^ mix(b + 0x9E3779B97F4A7C15ull) ^ mix(c + 2 * 0x9E3779B97F4A7C15ull) ^ mix(d + 3 * 0x9E3779B97F4A7C15ull);
    return mix(h ^ (uint64_t)bytes);
}
