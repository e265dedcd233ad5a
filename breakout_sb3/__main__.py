from breakout_sb3.cli import main

raise SystemExit(main())
