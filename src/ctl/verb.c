/* verb: what every cloudlessctl verb does around its own logic (see ctl.h): send a request
 * and turn what came of it into an exit status and at most one line on stderr, print results,
 * escape keys into URLs. Kept apart from main.c so the verb groups (and their renderers'
 * unit test) link without the dispatcher. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "ctl/output.h"

static void vfail(const char *fmt, va_list ap)
{
	struct buf line;
	buf_init(&line);
	buf_puts(&line, "cloudlessctl: ");
	buf_vprintf(&line, fmt, ap);
	buf_puts(&line, "\n");
	fwrite(line.data, 1, line.len, stderr);
	fflush(stderr);
	buf_close(&line);
}

int ctl_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return code;
}

int ctl_usage_error(const struct ctl *c, const char *fmt, ...)
{
	struct buf msg;
	va_list ap;
	buf_init(&msg);
	va_start(ap, fmt);
	buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	ctl_fail(CTL_EXIT_USAGE, "%s %s: %s (see 'cloudlessctl %s %s --help')", c->group, c->verb,
	         msg.data, c->group, c->verb);
	buf_close(&msg);
	return CTL_EXIT_USAGE;
}

int ctl_report_answer(const struct ctl *c, const struct ctl_response *resp)
{
	struct buf line;
	(void)c;
	buf_init(&line);
	ctl_render_problem(resp->status, resp->body, resp->body_len, &line);
	ctl_fail(CTL_EXIT_ERROR, "%s", line.data);
	buf_close(&line);
	return CTL_EXIT_ERROR;
}

int ctl_send(struct ctl *c, const struct ctl_request *req, struct ctl_response *resp,
             bool keep_errors)
{
	char why[1024];
	switch (ctl_call(&c->client, req, resp, why, sizeof why)) {
	case CTL_UNREACHABLE:
		return ctl_fail(CTL_EXIT_UNREACHABLE, "no endpoint reachable: %s", why);
	case CTL_UNKNOWN:
		return ctl_fail(CTL_EXIT_UNREACHABLE,
		                "no answer: %s; the request may or may not have been applied", why);
	case CTL_ANSWERED:
		break;
	}
	if (resp->status >= 200 && resp->status < 300)
		return CTL_EXIT_OK;
	if (!keep_errors) {
		ctl_report_answer(c, resp);
		ctl_response_free(resp);
	}
	return CTL_EXIT_ERROR;
}

int ctl_print(const char *data, size_t len, bool newline)
{
	if (len > 0)
		fwrite(data, 1, len, stdout);
	if (newline)
		fputc('\n', stdout);
	if (fflush(stdout) != 0 || ferror(stdout))
		return ctl_fail(CTL_EXIT_ERROR, "cannot write the output");
	return CTL_EXIT_OK;
}

int ctl_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	if (s == NULL)
		return ctl_fail(CTL_EXIT_ERROR, "cannot encode the output");
	int rc = ctl_print(s, strlen(s), true);
	free(s);
	return rc;
}

int ctl_print_rendered(void (*render)(const json_t *, struct buf *), const json_t *doc)
{
	struct buf out;
	buf_init(&out);
	render(doc, &out);
	int rc = ctl_print(out.data, out.len, false);
	buf_close(&out);
	return rc;
}

json_t *ctl_parse_answer(const struct ctl_response *resp)
{
	json_error_t e;
	json_t *doc = json_loadb(resp->body, resp->body_len, 0, &e);
	if (doc == NULL)
		ctl_fail(CTL_EXIT_ERROR, "%s answered something that is not JSON: %s", resp->base,
		         e.text);
	return doc;
}

void ctl_put_escaped(struct buf *b, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '~') {
			buf_append(b, s + i, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			buf_append(b, e, 3);
		}
	}
}

int ctl_print_answer(const struct ctl *c, struct ctl_response *resp,
                     void (*render)(const json_t *, struct buf *))
{
	int rc;
	if (c->output == CTL_OUTPUT_JSON) {
		rc = ctl_print(resp->body, resp->body_len, true);
	} else {
		json_t *doc = ctl_parse_answer(resp);
		rc = doc != NULL ? ctl_print_rendered(render, doc) : CTL_EXIT_ERROR;
		json_decref(doc);
	}
	ctl_response_free(resp);
	return rc;
}
