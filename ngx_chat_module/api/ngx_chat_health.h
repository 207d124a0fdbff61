/* ngx_chat_health.h: "chat_health", whether this worker's links to Redis,
 * PostgreSQL and Kafka are up, for load balancers and monitoring. */

#ifndef _NGX_CHAT_HEALTH_H_INCLUDED_
#define _NGX_CHAT_HEALTH_H_INCLUDED_

#include "ngx_chat.h"


/* "chat_health" (location, no arguments) */
char *ngx_chat_health_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

#endif /* _NGX_CHAT_HEALTH_H_INCLUDED_ */
