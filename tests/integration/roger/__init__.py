"""Roger's own ExUnit suite (bettyblocks/roger, ``test/``), ported test by test."""
