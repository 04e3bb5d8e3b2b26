/*
 * version.c - the release of kabar, one string for every program.
 *
 * KABAR_VERSION comes from project(kabar VERSION ...) in CMakeLists.txt, set
 * on this file alone so that a new release recompiles only it.
 */
#include "kabar.h"

#ifndef KABAR_VERSION
#error "KABAR_VERSION is set by CMakeLists.txt (project(kabar VERSION ...))"
#endif

const char *kabar_version(void)
{
    return KABAR_VERSION;
}
