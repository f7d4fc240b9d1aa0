// difflab: the command line. Everything happens in difflab::run_cli.
#include "cli/cli.h"

int main(int argc, char** argv) { return difflab::run_cli(argc, argv); }
