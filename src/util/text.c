/* text: UTF-8 validation, base64 and strict number parsing (see text.h). */
#include "util/text.h"

#include <string.h>

bool text_valid_utf8(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		unsigned char c = p[i];
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		for (size_t k = 1; k <= n; k++) {
			if (i + k >= len || (p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		/* Reject overlong forms, surrogates and values past U+10FFFF. */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		i += n + 1;
	}
	return true;
}

size_t text_utf8_char_len(const char *s, size_t len)
{
	unsigned char c = len > 0 ? (unsigned char)s[0] : 0;
	size_t n = c < 0x80             ? 1
	           : (c & 0xe0) == 0xc0 ? 2
	           : (c & 0xf0) == 0xe0 ? 3
	           : (c & 0xf8) == 0xf0 ? 4
	                                : 0;
	return len > 0 && n > 0 && n <= len && text_valid_utf8(s, n) ? n : 0;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void text_base64_encode(const void *data, size_t len, struct buf *out)
{
	const unsigned char *p = data;
	buf_reserve(out, (len + 2) / 3 * 4);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		char q[4] = {B64[v >> 18 & 63], B64[v >> 12 & 63],
		             i + 1 < len ? B64[v >> 6 & 63] : '=', i + 2 < len ? B64[v & 63] : '='};
		buf_append(out, q, 4);
	}
}

static int b64_value(char c)
{
	const char *p = c ? strchr(B64, c) : NULL;
	return p ? (int)(p - B64) : -1;
}

int text_base64_decode(const char *s, size_t len, struct buf *out)
{
	if (len % 4 != 0)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4];
		int pad = 0;
		for (int k = 0; k < 4; k++) {
			if (s[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad > 0 || (v[k] = b64_value(s[i + k])) < 0) {
				return -1;
			}
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		             (uint32_t)v[3];
		unsigned char o[3] = {(unsigned char)(x >> 16), (unsigned char)(x >> 8),
		                      (unsigned char)x};
		buf_append(out, o, (size_t)(3 - pad));
	}
	return 0;
}

int text_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	if (s == NULL || *s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*out = v;
	return 0;
}

int text_parse_duration_ms(const char *s, unsigned *out)
{
	char digits[24];
	size_t n = 0;
	while (s[n] >= '0' && s[n] <= '9' && n < sizeof digits - 1) {
		digits[n] = s[n];
		n++;
	}
	digits[n] = '\0';
	uint64_t v;
	if (n == 0 || text_parse_u64(digits, &v) != 0 || v > 3600000)
		return -1;
	const char *unit = s + n;
	if (*unit == '\0' || strcmp(unit, "ms") == 0)
		;
	else if (strcmp(unit, "s") == 0)
		v *= 1000;
	else if (strcmp(unit, "m") == 0)
		v *= 60000;
	else if (strcmp(unit, "h") == 0)
		v *= 3600000;
	else
		return -1;
	if (v == 0 || v > 3600000)
		return -1;
	*out = (unsigned)v;
	return 0;
}
