"""The processing half: decode -> route -> claim -> processors -> mark done."""
