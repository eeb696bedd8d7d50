from ffray.cli import main

raise SystemExit(main())
