/* Placeholder: the codec is being written. */
#include "drover/protocol.h"
