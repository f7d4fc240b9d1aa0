// difflab: the command line. Everything happens in difflab::run_cli.
#include "difflab/cli.h"

int main(int argc, char** argv) { return difflab::run_cli(argc, argv); }
