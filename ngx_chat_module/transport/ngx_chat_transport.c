/* ngx_chat_transport.c: the handler through which every transport hands
 * its connections to the session layer. */

#include "ngx_chat_transport.h"


ngx_chat_transport_open_pt  ngx_chat_transport_open;
