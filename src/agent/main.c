/* cloudless-agent: entry point. Parses the configuration and hands over to agent.c.
 *
 * SIGPIPE is ignored (a coordinator that dies mid-request must not kill the agent; replicas
 * get every signal back at its default before exec), and the standard descriptors are made
 * to exist, so that no pipe or socket the agent opens can land on 0-2 and be taken for a
 * replica's stdin or stdout. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "config/config.h"
#include "log/log.h"

static void ensure_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0) {
			int n = open("/dev/null", O_RDWR);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
}

int main(int argc, char *argv[])
{
	struct agent_config cfg;
	char err[512];
	ensure_std_fds();
	signal(SIGPIPE, SIG_IGN);
	switch (agent_config_parse(&cfg, argc, argv, NULL, err, sizeof err)) {
	case AGENT_CONFIG_HELP:
		fputs(agent_config_usage(), stdout);
		return 0;
	case AGENT_CONFIG_VERSION:
		printf("cloudless-agent %s\n", CLOUDLESS_VERSION);
		return 0;
	case AGENT_CONFIG_ERROR:
		fprintf(stderr, "cloudless-agent: %s%s\n", err,
		        strstr(err, "(see --help)") != NULL ? "" : " (see --help)");
		return 2;
	case AGENT_CONFIG_OK:
		break;
	}
	/* The coordinator's data-dir check (mkdir -p, 0700, proven writable) serves as is. */
	struct config dir = {.data_dir = cfg.data_dir};
	if (config_prepare_data_dir(&dir, err, sizeof err) != 0) {
		fprintf(stderr, "cloudless-agent: %s\n", err);
		agent_config_close(&cfg);
		return 2;
	}
	log_set_level(log_level_parse(cfg.log_level));
	int rv = agent_run(&cfg);
	agent_config_close(&cfg);
	return rv;
}
